"""Action-chunk latency: InferenceEngine (fast path) vs the eager model, random weights, N1.5 or N1.6.

    python benchmarks/latency.py                                  # n1.5-3b, bf16, CUDA, batch 1 8 32
    python benchmarks/latency.py --preset n1.6-3b                 # N1.6, same settings
    python benchmarks/latency.py --preset tiny --device cpu --dtype float32 --iters 5

Input per sample: one raw 256x256 uint8 camera frame, a state of the head's `max_state_dim` (64 on
N1.5, 128 on n1.6-3b), an instruction; output: the normalized action chunk [B, action_horizon,
action_dim] (N1.5 [B, 16, 32], n1.6-3b [B, 50, 128]) on the host, after the config's denoising steps (4)
(the Policy's per-key un-normalization is a few host-side multiply-adds, not timed). Frames get the
original's eval crop and resize (`release_geometry`, the engine's default): N1.5 centre crop 0.95 to a
224 x 224 square (256 image tokens), N1.6 shortest edge 256, crop 0.95, sides multiples of 28 at the
frame's own aspect ratio (256x256 -> 252x252: 81 image tokens).

Prompt, the reference setting of the 3B presets: one view and a 4-token instruction such as "pick up
the cube". N1.5: 286 tokens (with the Eagle tokenizer one view's template and image tokens are 282, 256
of them <IMG_CONTEXT>). N1.6: the frame's image tokens + 27 (108 for a 256x256 frame): the N1.6
template (text first, then the image, no generation prompt) is estimated at 23 tokens, the N1.5
template's 26 less the 3 of the generation prompt (`<|im_start|>assistant` + newline) that N1.6 omits
(an estimate: no Qwen3 tokenizer is reachable here), + 4 instruction tokens. The built-in byte
tokenizer is used with plain-text runs cut into 4-byte tokens (about Qwen3's rate on English; special
and image tokens unchanged), and the instruction is padded / trimmed until the whole prompt is
`--prompt-tokens` long (default: the reference length). Other presets take a short instruction as is.

Engine variants (`--variants`): `exact` (the eager model's numerics, fused projections, a graph per
exact prompt length), `fast` (exact=False: no LLM mask when unpadded), `compiled` (fast +
`compile=True`: each kind of repeated transformer block compiled once, `regional_compile`; no
projection fusion). Per batch size and path it reports p50 / p99 milliseconds of
- preprocess: uploads (+ prompt ids when they change); eager: CPU transform + processor + uploads,
- backbone: frames -> pixels (fast path: on the GPU) + vision + LLM; head: VL self-attention (N1.5) +
  all denoising steps (each stage timed with a device synchronisation after it),
- total: samples in -> actions on the host with no intermediate synchronisation,
plus chunks/s, `first_call_s` (engines: the first call at that batch size, compilation and graph
captures included) and two max abs differences with the same noise: `model` (the eager model on the
engine's pixels: the fast path's own numerics) and `end_to_end` (eager with the CPU image transform,
whose antialiased resize may differ from the GPU's by one uint8 level). `--profile DIR` writes per-
kernel GPU time summaries (first variant, batch 1, graphs off) and a fused-vs-separate GEMM check.
JSON (preset, raw frame size, model image, image tokens, prompt tokens, denoising steps, device, ...) goes
to benchmarks/results/latency_<device>.json, N1.6: latency_<preset>_<device>.json (or --out); a table is
printed last.
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

from groot.data.image_ops import ImageGeometry
from groot.inference import InferenceEngine
from groot.inference.engine import release_geometry
from groot.model.config import GR00TN15Config, preset_config
from groot.model.gr00t_n15 import GR00TN15
from groot.model.gr00t_n16 import model_class
from groot.model.processor import GrootProcessor
from groot.model.tokenizer import ByteTokenizer
from kernel_profile import kernel_summary

INSTRUCTION = "pick up the red cube from the table and put it in the blue bowl next to the sink, then " \
              "move the arm back to its resting pose above the table "
NEW_EMBODIMENT = 31
VARIANTS = {"exact": {}, "fast": {"exact": False}, "compiled": {"exact": False, "compile": True}}
N15_REFERENCE_PROMPT = 286  # n1.5-3b: 282 template + image tokens + 4 instruction tokens
N16_TEMPLATE_TOKENS = 23  # n1.6-3b template without image tokens (estimate, see the module docstring)
REFERENCE_INSTRUCTION_TOKENS = 4  # "pick up the cube"


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
    """Random weights (GR00TN15 or GR00TN16) built directly on the device and the processor of the
    preset's generation, with the chunked byte tokenizer (<IMG_CONTEXT>: the byte tokenizer's id)."""
    cfg = preset_config(preset)
    cfg.backbone_cfg.tokenizer = "bytes"
    cfg.backbone_cfg.image_token_id = ByteTokenizer().image_token_id
    torch.manual_seed(0)
    with torch.device(device):
        model = model_class(cfg)(cfg)
    processor = GrootProcessor.for_config(cfg)
    processor.tokenizer = ChunkedByteTokenizer(cfg.backbone_cfg.llm.vocab_size)
    return model.to(dtype).eval(), processor


def reference_prompt_tokens(config: GR00TN15Config, image_tokens: int) -> int | None:
    """The reference prompt length of a 3B preset with one view of `image_tokens`; None for others."""
    if config.preset == "n1.5-3b":
        return N15_REFERENCE_PROMPT
    if config.preset == "n1.6-3b":
        return image_tokens + N16_TEMPLATE_TOKENS + REFERENCE_INSTRUCTION_TOKENS
    return None


def instruction_for(processor: GrootProcessor, prompt_tokens: int, image_tokens: int) -> str:
    """INSTRUCTION padded (repeated) or trimmed so the one-image prompt (`image_tokens` per image) is
    `prompt_tokens` long."""
    def length(text: str) -> int:
        rendered = processor.render(processor.instruction(text), 1, image_tokens)
        return len(processor.tokenizer.encode(rendered))

    if length("") > prompt_tokens:
        raise ValueError(f"--prompt-tokens {prompt_tokens}: the template alone has {length('')} tokens")
    text = ""
    while length(text) < prompt_tokens:
        text += INSTRUCTION[len(text) % len(INSTRUCTION)]
    return text


def make_samples(batch: int, raw_size: int, language: str, seed: int, state_dim: int) -> list[dict]:
    rng = np.random.default_rng(seed)
    return [{"images": rng.integers(0, 256, (1, raw_size, raw_size, 3), dtype=np.uint8),
             "language": language,
             "state": rng.standard_normal((1, state_dim)).astype(np.float32),
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


def transformed(samples: list[dict], geometry: ImageGeometry) -> list[dict]:
    """The CPU eval transform's geometric part (`release_geometry`: N1.5 centre crop 0.95 + resize to
    the model size; N1.6 shortest edge, crop, sides multiples of 28)."""
    return [dict(s, images=geometry(torch.from_numpy(s["images"])).numpy()) for s in samples]


def eager_stages(model: GR00TN15, processor: GrootProcessor, samples: list[dict], noise: torch.Tensor,
                 device: torch.device) -> list[tuple[str, Callable]]:
    """The eager model's `get_action`, split into timed stages (the head gets what `get_action` passes
    it: N1.6's text / image token masks too)."""
    geometry = release_geometry(model.config)

    def preprocess(_):
        return processor(transformed(samples, geometry)).to(device)

    def backbone(batch):
        return batch, model.backbone_features(batch)

    def head(batch_features):
        batch, features = batch_features
        dtype = features.dtype
        return model.action_head.sample(features, batch.state.to(dtype), batch.embodiment_id,
                                        noise=noise.to(dtype), vl_masks=model.vl_masks(batch)).float().cpu()

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
    batch = dataclasses.replace(processor(transformed(samples, engine.geometry)).to(engine.device),
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
    config, head = model.config, model.config.action_head_cfg
    model_image = release_geometry(config).output_size(args.raw_size, args.raw_size)
    image_tokens = processor.image_tokens(*model_image)
    reference = reference_prompt_tokens(config, image_tokens)
    if reference is None:
        language = "pick the cube" if config.generation == "n1.5" else "pick up the cube"
    else:
        language = instruction_for(processor, args.prompt_tokens or reference, image_tokens)
    prompt_tokens = len(processor.prompt_ids(language, 1, image_tokens))
    setting = (f"reference setting {reference}: {image_tokens} image tokens + template + instruction"
               if reference else f"{image_tokens} image tokens + template + {language!r}")
    print(f"prompt: {prompt_tokens} tokens ({setting}; byte tokenizer with 4-byte text tokens, instruction "
          f"of {len(language)} characters{' padded/trimmed to fit' * bool(reference)})", flush=True)
    engines = {name: InferenceEngine(model, processor, max_batch=max(args.batch_sizes),
                                     use_cuda_graphs=not args.no_cuda_graphs, **VARIANTS[name])
               for name in args.variants}
    results = {"preset": args.preset, "generation": config.generation, "device": device_name(device),
               "dtype": args.dtype, "torch": torch.__version__, "raw_image": args.raw_size,
               "model_image": list(model_image), "image_tokens": image_tokens, "prompt_tokens": prompt_tokens,
               "reference_prompt_tokens": reference, "instruction": language,
               "tokenizer": "bytes, 4-byte text tokens", "denoising_steps": head.num_inference_timesteps,
               "action_chunk": [head.action_horizon, head.action_dim], "state_dim": head.max_state_dim,
               "cuda_graphs": not args.no_cuda_graphs, "batches": {}}
    with torch.inference_mode():
        for batch in args.batch_sizes:
            iters = max(10, round(args.iters / math.sqrt(batch)))
            samples = make_samples(batch, args.raw_size, language, seed=batch, state_dim=head.max_state_dim)
            noise = torch.randn(batch, head.action_horizon, head.action_dim, device=device).to(dtype)
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
            results["fusion_check"] = fusion_check(model, device, model_image, prompt_tokens)
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
    samples = make_samples(1, raw_size, language, seed=1,
                           state_dim=model.config.action_head_cfg.max_state_dim)
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


def fusion_check(model: GR00TN15, device: torch.device, model_image: tuple[int, int],
                 prompt_tokens: int) -> list[dict]:
    """Fused vs separate projections (with bias) at the run's shapes (one image of `model_image` pixels,
    a prompt of `prompt_tokens`; n1.5-3b at the reference: 256, 286 and 49 rows per sample): bit-
    identical? host-timed ms."""
    cfg, head = model.config.backbone_cfg, model.config.action_head_cfg
    vision, llm, dit = cfg.vision.hidden_size, cfg.llm.hidden_size, head.diffusion_model_cfg.inner_dim
    kv = cfg.llm.num_kv_heads * cfg.llm.head_dim
    patches = (model_image[0] // cfg.vision.patch_size) * (model_image[1] // cfg.vision.patch_size)
    dit_tokens = 1 + head.num_target_vision_tokens + head.action_horizon  # state, future, action tokens
    shapes = {"siglip_qkv": (patches, vision, [vision] * 3), "qwen3_qkv": (prompt_tokens, llm, [llm, kv, kv]),
              "qwen3_gate_up": (prompt_tokens, llm, [cfg.llm.intermediate_size] * 2),
              "vl_sa_qkv": (prompt_tokens, head.backbone_embedding_dim, [head.backbone_embedding_dim] * 3),
              "dit_self_qkv": (dit_tokens, dit, [dit] * 3)}
    if not head.use_vl_self_attention:
        del shapes["vl_sa_qkv"]
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
    parser.add_argument("--prompt-tokens", type=int, default=None,
                        help="prompt length in tokens of n1.5-3b / n1.6-3b (default: the reference setting, "
                             "286 / the frame's image tokens + 27: 108 at 256x256)")
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
    prefix = "latency" if results["generation"] == "n1.5" else f"latency_{args.preset}"
    out = args.out or Path(__file__).parent / "results" / f"{prefix}_{slug}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print_table(results)
    print(f"\nwrote {out}")
    if results.get("failed"):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
