"""Loss curves of `--trainable-dtype fp32` and `--trainable-dtype bf16` (bf16 weights, gradients and AdamW
moments, stochastically rounded updates): the same model, data and seed trained through `finetune()` in
both modes, every step's loss recorded.

    python benchmarks/low_precision_curve.py --preset tiny --steps 200 --batch-size 4   # CPU, minutes
    python benchmarks/low_precision_curve.py --preset small --steps 500 --batch-size 32  # one GPU

On the CPU the fp32 run computes in fp32 and the bf16 run under bf16 autocast (the modes as `finetune`
runs them there); on a GPU both compute under bf16 autocast and differ only in what the trained weights,
gradients and moments are stored in. Writes benchmarks/results/low_precision_curve_<device>.json and a
PNG of both curves beside it, and prints the max / mean relative difference of the smoothed losses.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from groot.data.synthetic import make_synthetic_dataset
from groot.sim.libero import STATE_DIMS, STATE_ROTATIONS
from groot.train.finetune import FinetuneConfig, finetune
from groot.train.logging import read_metrics

RESULTS = Path(__file__).parent / "results"
MODES = ("fp32", "bf16")


def smoothed(losses: list[float], window: int) -> np.ndarray:
    """Trailing moving average over `window` steps (shorter at the start)."""
    values = np.asarray(losses, dtype=np.float64)
    sums = np.cumsum(np.insert(values, 0, 0.0))
    ends = np.arange(1, len(values) + 1)
    starts = np.maximum(ends - window, 0)
    return (sums[ends] - sums[starts]) / (ends - starts)


def train_curve(dataset: Path, output_dir: Path, args: argparse.Namespace, mode: str) -> dict:
    """Per-step losses and wall time of one `finetune` run in `mode`."""
    cfg = FinetuneConfig(
        dataset_path=[str(dataset)], output_dir=str(output_dir), data_config="libero_panda",
        base_model=args.preset, batch_size=args.batch_size, max_steps=args.steps, save_steps=args.steps,
        logging_steps=1, learning_rate=args.learning_rate, warmup_ratio=args.warmup_ratio,
        dataloader_num_workers=args.workers, seed=args.seed, trainable_dtype=mode, save_total_limit=1)
    start = time.perf_counter()
    finetune(cfg)
    seconds = time.perf_counter() - start
    records = read_metrics(output_dir / "metrics.jsonl")
    return {"losses": [r["loss"] for r in records if "loss" in r], "seconds": round(seconds, 1)}


def plot(curves: dict[str, np.ndarray], raw: dict[str, list[float]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(8, 4.5))
    for mode, colour in zip(MODES, ("tab:blue", "tab:orange"), strict=True):
        steps = np.arange(1, len(raw[mode]) + 1)
        axis.plot(steps, raw[mode], color=colour, alpha=0.2, linewidth=0.8)
        axis.plot(steps, curves[mode], color=colour, label=f"trainable {mode} (smoothed)")
    axis.set(xlabel="step", ylabel="flow-matching loss", title=title, yscale="log")
    axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="tiny", help="model preset (tiny on the CPU, small on a GPU)")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--warmup-ratio", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--smooth", type=int, default=20, help="moving-average window of the comparison")
    parser.add_argument("--episodes", type=int, default=8)
    parser.add_argument("--workers", type=int, default=0, help="loader workers")
    parser.add_argument("--tag", default=None, help="result name suffix (default: cpu, or the GPU's name)")
    parser.add_argument("--out", type=Path, default=None,
                        help="result JSON (default: benchmarks/results/low_precision_curve_<tag>.json); "
                             "the PNG goes beside it")
    args = parser.parse_args(argv)

    device = "cuda" if torch.cuda.is_available() else "cpu"
    tag = args.tag or ("cpu" if device == "cpu" else
                       torch.cuda.get_device_name().lower().replace("nvidia ", "").split()[0])
    with tempfile.TemporaryDirectory() as tmp:
        dataset = make_synthetic_dataset(
            Path(tmp) / "data", num_episodes=args.episodes, episode_length=32,
            cameras=("image", "wrist_image"), image_size=64,
            state_dims=STATE_DIMS, state_rotations=STATE_ROTATIONS,
            action_dims={"eef_delta_pos": 3, "eef_delta_rot": 3, "gripper": 1})
        runs = {mode: train_curve(dataset, Path(tmp) / mode, args, mode) for mode in MODES}

    raw = {mode: runs[mode]["losses"] for mode in MODES}
    curves = {mode: smoothed(raw[mode], args.smooth) for mode in MODES}
    relative = np.abs(curves["bf16"] - curves["fp32"]) / curves["fp32"]
    last = slice(-args.smooth, None)
    result = {
        "benchmark": "low_precision_curve", "device": device, "device_name": tag,
        "host": platform.node(), "torch": torch.__version__,
        "settings": {k: v for k, v in vars(args).items() if k not in ("tag", "out")},
        "smoothed_relative_difference": {"max": float(relative.max()), "mean": float(relative.mean()),
                                         "last_window_mean": float(relative[last].mean())},
        "final_smoothed_loss": {mode: float(curves[mode][-1]) for mode in MODES},
        "first_smoothed_loss": {mode: float(curves[mode][args.smooth - 1]) for mode in MODES},
        "seconds": {mode: runs[mode]["seconds"] for mode in MODES},
        "losses": raw,
    }
    json_path = args.out or RESULTS / f"low_precision_curve_{tag}.json"
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(result, indent=1) + "\n")
    plot(curves, raw, json_path.with_suffix(".png"),
         f"{args.preset}, batch {args.batch_size}, lr {args.learning_rate:g}, {tag}: fp32 vs bf16 + SR")
    difference = result["smoothed_relative_difference"]
    print(f"smoothed ({args.smooth} steps) loss, bf16 vs fp32: max relative difference "
          f"{difference['max']:.4f}, mean {difference['mean']:.4f}, "
          f"last window {difference['last_window_mean']:.4f}")
    print(f"final smoothed loss: fp32 {result['final_smoothed_loss']['fp32']:.4f}, "
          f"bf16 {result['final_smoothed_loss']['bf16']:.4f}; wrote {json_path}")
    return result


if __name__ == "__main__":
    main()
