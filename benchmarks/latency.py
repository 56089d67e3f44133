"""Action-chunk latency: InferenceEngine (fast path) vs the eager model, random weights.

    python benchmarks/latency.py                                  # n1.5-3b, bf16, CUDA, batch 1 8 32
    python benchmarks/latency.py --preset tiny --device cpu --dtype float32 --iters 5

Input per sample: one raw 256x256 uint8 camera frame, a 64-d state, an instruction; output: the
normalized action chunk on the host (the Policy's per-key un-normalization is a few host-side
multiply-adds, not timed).

Prompt: 286 tokens, the reference setting: with the Eagle tokenizer one view's template and image
tokens are 282 (256 of them <IMG_CONTEXT>), so a 4-token instruction such as "Pick up the cube".
No Qwen3 tokenizer is reachable here, so the built-in byte tokenizer is used with plain-text runs cut
into 4-byte tokens (about Qwen3's rate on English; special and image tokens unchanged), and the
instruction is padded / trimmed until the whole prompt is `--prompt-tokens` long.

Engine variants (`--variants`): `exact` (the eager model's numerics, fused projections, a graph per
exact prompt length), `fast` (exact=False: no LLM mask when unpadded), `compiled` (fast +
`compile=True`: each kind of repeated transformer block compiled once, `regional_compile`; no
projection fusion). Per batch size and path it reports p50 / p99 milliseconds of
- preprocess: uploads (+ prompt ids when they change); eager: CPU transform + processor + uploads,
- backbone: frames -> pixels (fast path: on the GPU) + vision + LLM; head: VL self-attention + all
  denoising steps (each stage timed with a device synchronisation after it),
- total: samples in -> actions on the host with no intermediate synchronisation,
plus chunks/s, `first_call_s` (engines: the first call at that batch size, compilation and graph
captures included) and two max abs differences with the same noise: `model` (the eager model on the
engine's pixels: the fast path's own numerics) and `end_to_end` (eager with the CPU image transform,
whose antialiased resize may differ from the GPU's by one uint8 level). `--profile DIR` writes per-
kernel GPU time summaries (first variant, batch 1, graphs off) and a fused-vs-separate GEMM check.
JSON goes to benchmarks/results/latency_<device>.json (or --out); a table is printed last.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import platform
import re
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from groot.data import image_ops
from groot.inference import InferenceEngine
from groot.model.config import preset_config
from groot.model.gr00t_n15 import GR00TN15
from groot.model.processor import GrootProcessor, render_prompt
from groot.model.tokenizer import ByteTokenizer
from kernel_profile import kernel_summary

INSTRUCTION = "pick up the red cube from the table and put it in the blue bowl next to the sink, then " \
              "move the arm back to its resting pose above the table "
NEW_EMBODIMENT = 31
VARIANTS = {"exact": {}, "fast": {"exact": False}, "compiled": {"exact": False, "compile": True}}


class ChunkedByteTokenizer:
    """The byte tokenizer with every run of plain-text bytes cut into `chunk`-byte tokens (ids above the
    byte tokenizer's, hashed into the vocabulary); special and image tokens keep their ids."""

    def __init__(self, vocab_size: int, chunk: int = 4):
        self.bytes = ByteTokenizer()
        self.pad_token_id, self.image_token_id = self.bytes.pad_token_id, self.bytes.image_token_id
        self.vocab_size, self.chunk = vocab_size, chunk

    def encode(self, text: str) -> list[int]:
        out: list[int] = []
        run: list[int] = []
        for token in [*self.bytes.encode(text), None]:
            if token is not None and token < 256:
                run.append(token)
                continue
            for start in range(0, len(run), self.chunk):
                piece = int.from_bytes(bytes(run[start:start + self.chunk]), "little")
                out.append(self.bytes.vocab_size + piece % (self.vocab_size - self.bytes.vocab_size))
            run = []
            if token is not None:
                out.append(token)
        return out


def build_model(preset: str, device: torch.device, dtype: torch.dtype) -> tuple[GR00TN15, GrootProcessor]:
    """Random weights built directly on the device; the byte tokenizer's <IMG_CONTEXT> id is used."""
    cfg = preset_config(preset)
    cfg.backbone_cfg.tokenizer = "bytes"
    cfg.backbone_cfg.image_token_id = ByteTokenizer().image_token_id
    torch.manual_seed(0)
    with torch.device(device):
        model = GR00TN15(cfg)
    bb = cfg.backbone_cfg
    processor = GrootProcessor(ChunkedByteTokenizer(bb.llm.vocab_size), bb.vision.image_size,
                               bb.num_image_tokens)
    return model.to(dtype).eval(), processor


def instruction_for(processor: GrootProcessor, prompt_tokens: int) -> str:
    """INSTRUCTION padded (repeated) or trimmed so the one-image prompt is `prompt_tokens` long."""
    def length(text: str) -> int:
        return len(processor.tokenizer.encode(render_prompt(text, 1, processor.num_image_tokens)))

    if length("") > prompt_tokens:
        raise ValueError(f"--prompt-tokens {prompt_tokens}: the template alone has {length('')} tokens")
    text = ""
    while length(text) < prompt_tokens:
        text += INSTRUCTION[len(text) % len(INSTRUCTION)]
    return text


def make_samples(batch: int, raw_size: int, language: str, seed: int) -> list[dict]:
    rng = np.random.default_rng(seed)
    return [{"images": rng.integers(0, 256, (1, raw_size, raw_size, 3), dtype=np.uint8),
             "language": language,
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
    value = None
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


def summary(stages: dict[str, list[float]], total: list[float], batch: int) -> dict:
    out = {**{k: percentiles(v) for k, v in stages.items()}, "total": percentiles(total)}
    out["chunks_per_s"] = 1e3 * batch / out["total"]["p50"]
    return out


def transformed(samples: list[dict], processor: GrootProcessor) -> list[dict]:
    """The CPU eval transform's geometric part: centre crop 0.95 + resize to the model size."""
    size = processor.image_size
    return [dict(s, images=image_ops.crop_resize(torch.from_numpy(s["images"]), 0.95, size).numpy())
            for s in samples]


def eager_stages(model: GR00TN15, processor: GrootProcessor, samples: list[dict], noise: torch.Tensor,
                 device: torch.device) -> list[tuple[str, Callable]]:
    def preprocess(_):
        return processor(transformed(samples, processor)).to(device)

    def backbone(batch):
        return batch, model.backbone_features(batch)

    def head(batch_features):
        batch, features = batch_features
        dtype = features.dtype
        return model.action_head.sample(features, batch.state.to(dtype), batch.embodiment_id,
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


def eager_on_engine_pixels(model: GR00TN15, processor: GrootProcessor, engine: InferenceEngine,
                           samples: list[dict], noise: torch.Tensor) -> torch.Tensor:
    """The eager model on exactly the pixels the engine computed (its own numerics, no resize rounding)."""
    staged = engine.stage(samples, noise)
    engine.encode(staged)
    batch = dataclasses.replace(processor(transformed(samples, processor)).to(engine.device),
                                pixel_values=engine.pixels(staged).clone())
    return model.get_action(batch, noise=noise)["action_pred"].float().cpu()


def time_variant(engine: InferenceEngine, model: GR00TN15, processor: GrootProcessor, samples: list[dict],
                 noise: torch.Tensor, eager_actions: torch.Tensor, device: torch.device, warmup: int,
                 iters: int) -> dict:
    """One engine at one batch size: stage and total timings, differences to the eager model."""
    batch = len(samples)
    start = time.perf_counter()
    fast_actions = engine.predict(samples, noise=noise).float().cpu()
    first_call = time.perf_counter() - start  # includes the graph captures
    stages, _ = time_stages(fast_stages(engine, samples, noise), device, warmup, iters)
    total = time_total(lambda: engine.predict(samples, noise=noise).float().cpu(), device, warmup, iters)
    model_reference = eager_on_engine_pixels(model, processor, engine, samples, noise)
    return {**summary(stages, total, batch), "first_call_s": first_call,
            "max_abs_diff_model": float((fast_actions - model_reference).abs().max()),
            "max_abs_diff_end_to_end": float((fast_actions - eager_actions).abs().max()),
            "bit_identical_to_eager_model": torch.equal(fast_actions, model_reference)}


def run(args: argparse.Namespace) -> dict:
    device = torch.device(args.device)
    dtype = getattr(torch, args.dtype)
    model, processor = build_model(args.preset, device, dtype)
    language = instruction_for(processor, args.prompt_tokens) if args.preset == "n1.5-3b" else "pick the cube"
    prompt_tokens = len(processor.prompt_ids(language, 1))
    print(f"prompt: {prompt_tokens} tokens (reference setting ~286: 256 image tokens + template + "
          f"instruction; byte tokenizer with 4-byte text tokens, instruction of {len(language)} characters "
          "padded/trimmed to fit)", flush=True)
    engines = {name: InferenceEngine(model, processor, max_batch=max(args.batch_sizes),
                                     use_cuda_graphs=not args.no_cuda_graphs, **VARIANTS[name])
               for name in args.variants}
    results = {"preset": args.preset, "device": device_name(device), "dtype": args.dtype,
               "torch": torch.__version__, "raw_image": args.raw_size, "prompt_tokens": prompt_tokens,
               "tokenizer": "bytes, 4-byte text tokens", "cuda_graphs": not args.no_cuda_graphs,
               "batches": {}}
    with torch.inference_mode():
        for batch in args.batch_sizes:
            iters = max(10, round(args.iters / math.sqrt(batch)))
            samples = make_samples(batch, args.raw_size, language, seed=batch)
            noise = torch.randn(batch, 16, 32, device=device).to(dtype)
            eager_iters = max(2, iters // 10)
            eager = eager_stages(model, processor, samples, noise, device)
            stages, eager_actions = time_stages(eager, device, 1, eager_iters)
            total = [sum(parts) for parts in zip(*stages.values(), strict=True)]
            entry: dict = {"eager": summary(stages, total, batch), "timed_iters": iters}
            for name, engine in engines.items():
                try:
                    entry[name] = time_variant(engine, model, processor, samples, noise, eager_actions,
                                               device, args.warmup, iters)
                except Exception:  # recorded and reported; the other variants still run
                    entry[name] = {"error": traceback.format_exc()}
                    results["failed"] = True
                    print(f"batch {batch} {name} FAILED:\n{entry[name]['error']}", flush=True)
                    continue
                print(f"batch {batch} {name}: total p50 {entry[name]['total']['p50']:.2f} ms "
                      f"(eager {entry['eager']['total']['p50']:.2f}), diff model "
                      f"{entry[name]['max_abs_diff_model']:.2e}, end to end "
                      f"{entry[name]['max_abs_diff_end_to_end']:.2e}", flush=True)
            entry["max_abs_action"] = float(eager_actions.abs().max())
            results["batches"][str(batch)] = entry
    results["captured_graphs"] = {name: engine.captured_graphs for name, engine in engines.items()}
    if device.type == "cuda":
        results["max_memory_allocated_gb"] = torch.cuda.max_memory_allocated(device) / 2**30
    if args.profile is not None:
        try:
            results["fusion_check"] = fusion_check(model, device)
            for name in args.variants[:1]:
                profile_kernels(model, processor, name, language, args.raw_size, args.profile)
        except Exception:  # the timings above stay valid
            results["profile_error"] = traceback.format_exc()
            results["failed"] = True
            print(results["profile_error"], flush=True)
    return results


def profile_kernels(model: GR00TN15, processor: GrootProcessor, variant: str, language: str, raw_size: int,
                    directory: Path) -> None:
    """GPU kernel times of one batch-1 call without graphs (kernel durations equal the replay's)."""
    from torch.profiler import ProfilerActivity, profile

    engine = InferenceEngine(model, processor, max_batch=1, use_cuda_graphs=False, **VARIANTS[variant])
    samples = make_samples(1, raw_size, language, seed=1)
    with torch.inference_mode():
        for _ in range(2):
            engine.predict(samples)
        sync(engine.device)
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            engine.predict(samples)
            sync(engine.device)
    summary = kernel_summary(prof, f"variant {variant}, batch 1, graphs off")
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"kernels_{variant}_b1.txt").write_text(summary)
    print(summary[:1200], flush=True)


def fusion_check(model: GR00TN15, device: torch.device) -> list[dict]:
    """Fused vs separate projections (with bias) at the 3B shapes (bf16): bit-identical? host-timed ms."""
    cfg, head = model.config.backbone_cfg, model.config.action_head_cfg
    vision, llm, dit = cfg.vision.hidden_size, cfg.llm.hidden_size, head.diffusion_model_cfg.inner_dim
    kv = cfg.llm.num_kv_heads * cfg.llm.head_dim
    shapes = {"siglip_qkv": (256, vision, [vision] * 3), "qwen3_qkv": (286, llm, [llm, kv, kv]),
              "qwen3_gate_up": (286, llm, [cfg.llm.intermediate_size] * 2),
              "vl_sa_qkv": (286, head.backbone_embedding_dim, [head.backbone_embedding_dim] * 3),
              "dit_self_qkv": (49, dit, [dit] * 3)}
    dtype = next(model.parameters()).dtype
    out = []
    for name, (rows, width, outs) in shapes.items():
        for batch in (1, 32):
            x = torch.randn(batch * rows, width, device=device, dtype=dtype)
            weights = [0.02 * torch.randn(n, width, device=device, dtype=dtype) for n in outs]
            biases = [0.02 * torch.randn(n, device=device, dtype=dtype) for n in outs]
            fused_w, fused_b = torch.cat(weights), torch.cat(biases)
            separate = torch.cat([F.linear(x, w, b) for w, b in zip(weights, biases, strict=True)], -1)
            fused = F.linear(x, fused_w, fused_b)
            out.append({"gemm": name, "rows": batch * rows, "bit_identical": torch.equal(separate, fused),
                        "separate_ms": gpu_ms(lambda x=x, ws=weights: [F.linear(x, w) for w in ws], device),
                        "fused_ms": gpu_ms(lambda x=x, w=fused_w: F.linear(x, w), device)})  # launch-bound
    return out


def gpu_ms(fn: Callable[[], object], device: torch.device, iters: int = 50) -> float:
    for _ in range(5):
        fn()
    sync(device)
    start = time.perf_counter()
    for _ in range(iters):
        fn()
    sync(device)
    return 1e3 * (time.perf_counter() - start) / iters


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu-{platform.machine()}"


def print_table(results: dict) -> None:
    print(f"\n{results['preset']} {results['dtype']} on {results['device']} "
          f"(graphs: {results['cuda_graphs']}, prompt {results['prompt_tokens']} tokens)")
    print(f"{'batch':>5} {'path':>8} {'prep p50':>9} {'bb p50':>8} {'head p50':>9} {'total p50':>10} "
          f"{'total p99':>10} {'chunks/s':>9} {'diff model':>11} {'diff e2e':>9}")
    for batch, entry in results["batches"].items():
        for path in [p for p in (*VARIANTS, "eager") if p in entry]:
            r = entry[path]
            if "error" in r:
                print(f"{batch:>5} {path:>8} failed: {r['error'].strip().splitlines()[-1]}")
                continue
            diffs = (f"{r['max_abs_diff_model']:11.2e} {r['max_abs_diff_end_to_end']:9.2e}" if path != "eager"
                     else f"{'':>11} {'':>9}")
            print(f"{batch:>5} {path:>8} {r['preprocess']['p50']:9.2f} {r['backbone']['p50']:8.2f} "
                  f"{r['head']['p50']:9.2f} {r['total']['p50']:10.2f} {r['total']['p99']:10.2f} "
                  f"{r['chunks_per_s']:9.1f} {diffs}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="n1.5-3b", help="model preset (random weights)")
    parser.add_argument("--device", default="cuda", help="cuda or cpu")
    parser.add_argument("--dtype", default="bfloat16", help="weight dtype: bfloat16 or float32")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8, 32], help="batch sizes to time")
    parser.add_argument("--variants", nargs="+", default=["exact", "fast"], choices=list(VARIANTS),
                        help="engine variants to time")
    parser.add_argument("--prompt-tokens", type=int, default=286,
                        help="prompt length in tokens (n1.5-3b; reference setting 286)")
    parser.add_argument("--raw-size", type=int, default=256, help="raw square camera resolution")
    parser.add_argument("--warmup", type=int, default=5, help="untimed calls before timing")
    parser.add_argument("--iters", type=int, default=100,
                        help="timed fast-path calls at batch 1 (divided by sqrt(batch); eager: a tenth)")
    parser.add_argument("--no-cuda-graphs", action="store_true", help="run the fast path without CUDA graphs")
    parser.add_argument("--profile", type=Path, default=None,
                        help="directory for per-kernel summaries and the fused-GEMM check (CUDA)")
    parser.add_argument("--out", type=Path, default=None, help="JSON path (default benchmarks/results/...)")
    args = parser.parse_args()
    results = run(args)
    slug = re.sub(r"[^a-z0-9]+", "_", results["device"].lower()).strip("_")
    out = args.out or Path(__file__).parent / "results" / f"latency_{slug}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print_table(results)
    print(f"\nwrote {out}")
    if results.get("failed"):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
