"""Eagle backbone forward latency (random weights, N1.5-3B sizes unless --preset says otherwise).

    python benchmarks/backbone_speed.py --device cuda --dtype bfloat16 --batch-sizes 1 8 --views 1

Prints one JSON line per setting: preset, batch size, views, prompt length, masked (a padding mask is
passed) and the median / p90 milliseconds over --iters timed calls after --warmup calls.
"""

from __future__ import annotations

import argparse
import functools
import json
import statistics
import time

import numpy as np
import torch

from groot.model.config import preset_config
from groot.model.eagle import EagleBackbone
from groot.model.processor import GrootProcessor
from groot.model.tokenizer import ByteTokenizer

LANGUAGE = "pick up the red block from the table and place it in the blue bowl"


def _batch(cfg, batch_size: int, views: int, device: torch.device) -> dict[str, torch.Tensor]:
    """A processor batch built with the byte tokenizer; the prompt length is close to the real one."""
    bb = cfg.backbone_cfg
    processor = GrootProcessor(ByteTokenizer(), bb.vision.image_size, bb.num_image_tokens)
    size = bb.vision.image_size
    images = np.random.default_rng(0).integers(0, 256, (views, size, size, 3), dtype=np.uint8)
    sample = {"images": images, "language": LANGUAGE, "state": np.zeros((1, 64), np.float32),
              "state_mask": np.ones((1, 64), bool), "embodiment_id": 31}
    batch = processor([sample] * batch_size)
    ids = batch.input_ids
    ids[ids == ByteTokenizer().image_token_id] = bb.image_token_id  # the preset's <IMG_CONTEXT> id
    return batch.to(device)


@torch.no_grad()
def _forward(backbone: EagleBackbone, input_ids: torch.Tensor, pixels: torch.Tensor,
             mask: torch.Tensor | None) -> torch.Tensor:
    """The backbone piece by piece, so the unmasked (pure causal) attention path can be timed too."""
    embeds = backbone.embed(input_ids, backbone.encode_images(pixels))
    return backbone.language_model(embeds, mask)


def _time(fn, warmup: int, iters: int, device: torch.device) -> list[float]:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(iters):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append((time.perf_counter() - start) * 1000)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="n1.5-3b", help="model preset (n1.5-3b, small, tiny)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                        help="torch device")
    parser.add_argument("--dtype", default="bfloat16", choices=["float32", "bfloat16", "float16"],
                        help="weight and activation dtype")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8], help="batch sizes to time")
    parser.add_argument("--views", type=int, default=1, help="images per sample")
    parser.add_argument("--warmup", type=int, default=3, help="untimed calls before timing")
    parser.add_argument("--iters", type=int, default=20, help="timed calls per setting")
    args = parser.parse_args()

    device, dtype = torch.device(args.device), getattr(torch, args.dtype)
    cfg = preset_config(args.preset)
    torch.manual_seed(0)
    with torch.device(device):
        backbone = EagleBackbone(cfg.backbone_cfg).to(dtype).eval()
    for batch_size in args.batch_sizes:
        batch = _batch(cfg, batch_size, args.views, device)
        pixels = batch.pixel_values.to(dtype)
        for masked in (True, False):
            mask = batch.attention_mask if masked else None
            call = functools.partial(_forward, backbone, batch.input_ids, pixels, mask)
            times = _time(call, args.warmup, args.iters, device)
            print(json.dumps({
                "preset": args.preset, "device": str(device), "dtype": args.dtype, "batch_size": batch_size,
                "views": args.views, "prompt_len": batch.input_ids.shape[1], "masked": masked,
                "median_ms": round(statistics.median(times), 3),
                "p90_ms": round(float(np.percentile(times, 90)), 3),
            }))


if __name__ == "__main__":
    main()
