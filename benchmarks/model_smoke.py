"""GPU smoke test of the whole model: build GR00T N1.5-3B with random weights, sample action chunks.

    python benchmarks/model_smoke.py                                        # n1.5-3b, bf16, CUDA
    python benchmarks/model_smoke.py --preset tiny --device cpu --dtype float32 --iters 3   # CPU check

Input: one camera at the preset's image size (224² for n1.5-3b) and a prompt of
`num_image_tokens + text_tokens` ids (random text ids: the GPU box is offline and ids only matter for
the shape; 256 + 34 = 290 matches a Qwen3 prompt with a ~30-token instruction). Reports build time,
get_action latency (median / p90 of `--iters` after `--warmup`, device-synchronised), the backbone /
action-head split, peak device memory, and the max abs difference between `sample()` (cross-attention
K/V computed once) and an Euler loop that recomputes everything each step (must be ~0). With
--check-load (default) it also times save_pretrained and from_pretrained (meta-device build, shards read
straight to the device) through a temporary directory and checks the round trip is bit-exact.
JSON goes to benchmarks/results/model_smoke_<device>.json (or --out).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch

from groot.model.config import preset_config
from groot.model.gr00t_n15 import GR00TN15
from groot.model.synthetic_batch import synthetic_batch

NEW_EMBODIMENT = 31


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed_ms(fn, device: torch.device, warmup: int, iters: int) -> list[float]:
    for _ in range(warmup):
        fn()
    sync(device)
    times = []
    for _ in range(iters):
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(1e3 * (time.perf_counter() - start))
    return times


@torch.no_grad()
def recompute_each_step(model: GR00TN15, features: torch.Tensor, state: torch.Tensor,
                        embodiment: torch.Tensor, noise: torch.Tensor, steps: int) -> torch.Tensor:
    """Reference Euler loop without any caching (VL adapter, state tokens and K/V redone per step)."""
    head = model.action_head
    actions = noise
    for k in range(steps):
        buckets = torch.full((noise.shape[0],), int(k / steps * 1000), device=noise.device)
        cross_kv = head.model.cross_kv(head.encode_vl(features))
        velocity = head.predict_velocity(head.state_encoder(state, embodiment), actions, embodiment, cross_kv,
                                         head.step_conditioning(buckets))
        actions = actions + velocity / steps
    return actions


def save_load_round_trip(model: GR00TN15, device: torch.device) -> dict[str, float | bool]:
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        model.save_pretrained(Path(tmp) / "ckpt")
        save_s = time.perf_counter() - start
        sync(device)
        start = time.perf_counter()
        loaded = GR00TN15.from_pretrained(Path(tmp) / "ckpt", device=device)
        sync(device)
        load_s = time.perf_counter() - start
    ours, theirs = model.state_dict(), loaded.state_dict()
    exact = list(ours) == list(theirs) and all(torch.equal(ours[k], theirs[k]) for k in ours)
    return {"save_s": save_s, "load_s": load_s, "load_bit_exact": exact}


def summary(times: list[float]) -> dict[str, float]:
    ordered = sorted(times)
    return {"median_ms": statistics.median(ordered), "p90_ms": ordered[int(0.9 * (len(ordered) - 1))],
            "min_ms": ordered[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="n1.5-3b", help="model preset (default: n1.5-3b)")
    parser.add_argument("--device", default="cuda", help="torch device (default: cuda)")
    parser.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float16", "float32"],
                        help="weight dtype (default: bfloat16)")
    parser.add_argument("--steps", type=int, default=4, help="denoising steps (default: 4)")
    parser.add_argument("--text-tokens", type=int, default=34, help="non-image prompt ids (default: 34)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed calls first (default: 3)")
    parser.add_argument("--iters", type=int, default=20, help="timed calls (default: 20)")
    parser.add_argument("--check-load", action=argparse.BooleanOptionalAction, default=True,
                        help="time a save + from_pretrained round trip in a temp dir (default: on)")
    parser.add_argument("--out", type=Path, default=None,
                        help="JSON output (default: benchmarks/results/model_smoke_<device>.json)")
    args = parser.parse_args()

    device, dtype = torch.device(args.device), getattr(torch, args.dtype)
    torch.manual_seed(0)
    sync(device)
    start = time.perf_counter()
    with torch.device(device):
        model = GR00TN15(preset_config(args.preset))
    model = model.to(dtype).eval()
    sync(device)
    build_s = time.perf_counter() - start
    # batch of 1: the model's image tokens with text_tokens // 2 prompt tokens on either side
    batch = synthetic_batch(model.config, 1, args.text_tokens // 2, embodiment=NEW_EMBODIMENT).to(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)

    generator = torch.Generator(device=device).manual_seed(0)
    total = timed_ms(lambda: model.get_action(batch, num_steps=args.steps, generator=generator),
                     device, args.warmup, args.iters)
    with torch.no_grad():
        features = model.backbone_features(batch)
        backbone = timed_ms(lambda: model.backbone_features(batch), device, args.warmup, args.iters)
        state = batch.state.to(dtype)
        head = timed_ms(lambda: model.action_head.sample(features, state, batch.embodiment_id,
                                                         num_steps=args.steps, generator=generator),
                        device, args.warmup, args.iters)
        noise = torch.randn(1, 16, 32, device=device, generator=generator, dtype=dtype)
        cached = model.action_head.sample(features, state, batch.embodiment_id, args.steps, noise=noise)
        reference = recompute_each_step(model, features, state, batch.embodiment_id, noise, args.steps)
    action = model.get_action(batch, num_steps=args.steps, generator=generator)["action_pred"]

    result = {
        "preset": args.preset, "device": str(device), "dtype": args.dtype,
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor(),
        "torch": torch.__version__,
        "parameters": sum(p.numel() for p in model.parameters()),
        "sequence_length": int(batch.input_ids.shape[1]),
        "denoising_steps": args.steps,
        "build_s": build_s,
        "get_action": summary(total),
        "backbone": summary(backbone),
        "action_head_sample": summary(head),
        "peak_memory_gib": torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None,
        "action_shape": list(action.shape),
        "action_finite": bool(torch.isfinite(action).all()),
        "kv_reuse_max_abs_diff": float((cached.float() - reference.float()).abs().max()),
    }
    if args.check_load:
        result.update(save_load_round_trip(model, device))
    out = args.out or Path(__file__).parent / "results" / f"model_smoke_{device.type}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    if not result["action_finite"] or result.get("load_bit_exact") is False:
        raise SystemExit("smoke test failed: non-finite actions or an inexact save/load round trip")


if __name__ == "__main__":
    main()
