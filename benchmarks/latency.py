"""Action-chunk latency: InferenceEngine (fast path) vs the eager model, random weights.

    python benchmarks/latency.py                                  # n1.5-3b, bf16, CUDA, batch 1 8 32
    python benchmarks/latency.py --preset tiny --device cpu --dtype float32 --iters 5

Input per sample: one raw 256x256 uint8 camera frame, a 64-d state, an instruction; output: the
normalized action chunk on the host (the Policy's per-key un-normalization is a few host-side
multiply-adds, not timed). The byte tokenizer stands in for the Qwen3 one (same prompt layout, about
as many tokens). Per batch size and path it reports p50 / p99 milliseconds of
- preprocess: crop + resize + pixels (+ prompt ids, padding, uploads); eager: CPU transform + processor,
- backbone: vision + LLM, head: VL self-attention + all denoising steps (each stage timed with a
  device synchronisation after it),
- total: samples in -> actions on the host with no intermediate synchronisation,
plus the fast path's chunks/s and the max abs difference fast vs eager with the same noise.
JSON goes to benchmarks/results/latency_<device>.json (or --out); a table is printed last.
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from groot.data import image_ops
from groot.inference import InferenceEngine
from groot.model.config import preset_config
from groot.model.gr00t_n15 import GR00TN15
from groot.model.processor import GrootProcessor
from groot.model.tokenizer import ByteTokenizer

LANGUAGE = "pick up the red cube and put it in the bowl"  # ~30 Qwen3 tokens with the chat template words
NEW_EMBODIMENT = 31


def build_model(preset: str, device: torch.device, dtype: torch.dtype) -> tuple[GR00TN15, GrootProcessor]:
    """Random weights built directly on the device; the byte tokenizer's <IMG_CONTEXT> id is used."""
    cfg = preset_config(preset)
    cfg.backbone_cfg.tokenizer = "bytes"
    cfg.backbone_cfg.image_token_id = ByteTokenizer().image_token_id
    torch.manual_seed(0)
    with torch.device(device):
        model = GR00TN15(cfg)
    return model.to(dtype).eval(), GrootProcessor.for_config(cfg)


def make_samples(batch: int, raw_size: int, seed: int) -> list[dict]:
    rng = np.random.default_rng(seed)
    return [{"images": rng.integers(0, 256, (1, raw_size, raw_size, 3), dtype=np.uint8),
             "language": LANGUAGE,
             "state": rng.standard_normal((1, 64)).astype(np.float32),
             "embodiment_id": NEW_EMBODIMENT} for _ in range(batch)]


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_stages(stages: list[tuple[str, Callable]], device: torch.device, warmup: int,
                iters: int) -> tuple[dict[str, list[float]], object]:
    """Run the stages in order `warmup + iters` times, each followed by a sync.
    -> (ms per stage, the last stage's last output)"""
    times: dict[str, list[float]] = {name: [] for name, _ in stages}
    for i in range(warmup + iters):
        value = None
        for name, fn in stages:
            start = time.perf_counter()
            value = fn(value)
            sync(device)
            if i >= warmup:
                times[name].append(1e3 * (time.perf_counter() - start))
    return times, value


def time_total(fn: Callable[[], object], device: torch.device, warmup: int, iters: int) -> list[float]:
    out = []
    for i in range(warmup + iters):
        sync(device)
        start = time.perf_counter()
        fn()
        if i >= warmup:
            out.append(1e3 * (time.perf_counter() - start))
    return out


def percentiles(values: list[float]) -> dict[str, float]:
    return {"p50": float(np.percentile(values, 50)), "p99": float(np.percentile(values, 99))}


def eager_stages(model: GR00TN15, processor: GrootProcessor, samples: list[dict], noise: torch.Tensor,
                 device: torch.device) -> list[tuple[str, Callable]]:
    size = processor.image_size

    def preprocess(_):
        shown = [dict(s, images=image_ops.crop_resize(torch.from_numpy(s["images"]), 0.95, size).numpy())
                 for s in samples]
        return {k: v.to(device) for k, v in processor(shown).items()}

    def backbone(batch):
        return batch, model.backbone_features(batch)

    def head(batch_features):
        batch, features = batch_features
        dtype = features.dtype
        return model.action_head.sample(features, batch["state"].to(dtype), batch["embodiment_id"],
                                        noise=noise.to(dtype)).float().cpu()

    return [("preprocess", preprocess), ("backbone", backbone), ("head", head)]


def fast_stages(engine: InferenceEngine, samples: list[dict],
                noise: torch.Tensor) -> list[tuple[str, Callable]]:
    def preprocess(_):
        return engine.stage(samples, noise)

    def backbone(staged):
        engine.encode(staged)
        return staged

    def head(staged):
        return engine.denoise(staged).float().cpu()

    return [("preprocess", preprocess), ("backbone", backbone), ("head", head)]


def run(args: argparse.Namespace) -> dict:
    device = torch.device(args.device)
    dtype = getattr(torch, args.dtype)
    model, processor = build_model(args.preset, device, dtype)
    engine = InferenceEngine(model, processor, max_batch=max(args.batch_sizes),
                             use_cuda_graphs=not args.no_cuda_graphs)
    results = {"preset": args.preset, "device": device_name(device), "dtype": args.dtype,
               "torch": torch.__version__, "raw_image": args.raw_size, "language": LANGUAGE,
               "cuda_graphs": not args.no_cuda_graphs, "batches": {}}
    with torch.inference_mode():
        for batch in args.batch_sizes:
            samples = make_samples(batch, args.raw_size, seed=batch)
            noise = torch.randn(batch, 16, 32, device=device, generator=None).to(dtype)
            entry: dict = {}
            start = time.perf_counter()
            fast_actions = engine.predict(samples, noise=noise).float().cpu()
            entry["first_call_s"] = time.perf_counter() - start  # includes the graph captures
            staged = engine.stage(samples, noise)
            entry["prompt_tokens"], entry["length_bucket"] = staged.prompt_length, staged.shape_key[1]
            entry["batch_bucket"] = staged.shape_key[0]
            stages, _ = time_stages(fast_stages(engine, samples, noise), device, args.warmup, args.iters)
            total = time_total(lambda s=samples, n=noise: engine.predict(s, noise=n).float().cpu(), device,
                               args.warmup, args.iters)
            entry["fast"] = {**{k: percentiles(v) for k, v in stages.items()}, "total": percentiles(total)}
            entry["fast"]["chunks_per_s"] = 1e3 * batch / entry["fast"]["total"]["p50"]
            eager_iters = max(2, args.iters // 4)
            eager = eager_stages(model, processor, samples, noise, device)
            stages, eager_actions = time_stages(eager, device, 1, eager_iters)
            total = [sum(parts) for parts in zip(*stages.values(), strict=True)]
            entry["eager"] = {**{k: percentiles(v) for k, v in stages.items()}, "total": percentiles(total)}
            entry["eager"]["chunks_per_s"] = 1e3 * batch / entry["eager"]["total"]["p50"]
            entry["max_abs_diff_fast_vs_eager"] = float((fast_actions - eager_actions).abs().max())
            results["batches"][str(batch)] = entry
            print(f"batch {batch}: fast total p50 {entry['fast']['total']['p50']:.2f} ms, eager "
                  f"{entry['eager']['total']['p50']:.2f} ms, diff {entry['max_abs_diff_fast_vs_eager']:.2e}",
                  flush=True)
    results["captured_graphs"] = engine.stages.captured
    if device.type == "cuda":
        results["max_memory_allocated_gb"] = torch.cuda.max_memory_allocated(device) / 2**30
    return results


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu-{platform.machine()}"


def print_table(results: dict) -> None:
    print(f"\n{results['preset']} {results['dtype']} on {results['device']} "
          f"(graphs: {results['cuda_graphs']})")
    header = (f"{'batch':>5} {'path':>5} {'prep p50':>9} {'bb p50':>9} {'head p50':>9} {'total p50':>10} "
              f"{'total p99':>10} {'chunks/s':>9} {'L':>4} {'max|diff|':>10}")
    print(header)
    for batch, entry in results["batches"].items():
        for path in ("fast", "eager"):
            r = entry[path]
            print(f"{batch:>5} {path:>5} {r['preprocess']['p50']:9.2f} {r['backbone']['p50']:9.2f} "
                  f"{r['head']['p50']:9.2f} {r['total']['p50']:10.2f} {r['total']['p99']:10.2f} "
                  f"{r['chunks_per_s']:9.1f} {entry['prompt_tokens']:4d} "
                  f"{entry['max_abs_diff_fast_vs_eager']:10.2e}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="n1.5-3b", help="model preset (random weights)")
    parser.add_argument("--device", default="cuda", help="cuda or cpu")
    parser.add_argument("--dtype", default="bfloat16", help="weight dtype: bfloat16 or float32")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8, 32], help="batch sizes to time")
    parser.add_argument("--raw-size", type=int, default=256, help="raw square camera resolution")
    parser.add_argument("--warmup", type=int, default=5, help="untimed calls before timing")
    parser.add_argument("--iters", type=int, default=100,
                        help="timed calls of the fast path (eager: a quarter)")
    parser.add_argument("--no-cuda-graphs", action="store_true", help="run the fast path without CUDA graphs")
    parser.add_argument("--out", type=Path, default=None, help="JSON path (default benchmarks/results/...)")
    args = parser.parse_args()
    results = run(args)
    slug = re.sub(r"[^a-z0-9]+", "_", results["device"].lower()).strip("_")
    out = args.out or Path(__file__).parent / "results" / f"latency_{slug}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print_table(results)
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
