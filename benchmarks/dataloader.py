"""Training data pipeline throughput: decode + transforms + collate through a torch DataLoader.

    python benchmarks/dataloader.py --workers 8 --cameras 1 3

For each camera count, writes (once, then reuses) a synthetic dataset of --episodes x --length steps with
--image-size square frames, then times batches of a shuffled DataLoader over `GrootDataset` (training
transforms: random crop 95 %, resize 224, colour jitter, min-max normalization) collated by the model's
`GrootProcessor` (byte tokenizer, float pixels [N, 3, 224, 224]). It also reports the per-sample cost of
decoding and of the transforms in one process. Results go to benchmarks/results/dataloader_<host>.json.

`--boundary-batches N --step-ms MS` also times N batches taken by a consumer that spends MS per batch
(a training step), once from a loader per epoch (its workers start at every epoch boundary, while the
consumer waits) and once from the one `EpochStream` loader `finetune` uses (workers start once and
prefetch across boundaries):

    python benchmarks/dataloader.py --workers 2 --cameras 2 --batch-size 128 --episodes 36 --length 128 \
        --image-size 128 --boundary-batches 72 --step-ms 400
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import socket
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from groot.data.configs import DataConfig
from groot.data.dataset import GrootDataset
from groot.data.synthetic import make_synthetic_dataset
from groot.model.processor import GrootProcessor
from groot.model.tokenizer import ByteTokenizer
from groot.train.data import EpochStream, ResumableShardedSampler, build_loader

CAMERA_NAMES = ("front", "wrist", "side", "top")


def data_config(cameras: int) -> DataConfig:
    state = ["state.arm", "state.gripper"]
    action = ["action.arm", "action.gripper"]
    return DataConfig("benchmark", [f"video.{name}" for name in CAMERA_NAMES[:cameras]], state, action,
                      ["annotation.human.action.task_description"],
                      state_normalization=dict.fromkeys(state, "min_max"),
                      action_normalization=dict.fromkeys(action, "min_max"))


def dataset_path(root: Path, cameras: int, args: argparse.Namespace) -> Path:
    path = root / f"synthetic_{cameras}cam_{args.episodes}x{args.length}_{args.image_size}px"
    if not path.exists():
        print(f"writing {path} ...", flush=True)
        make_synthetic_dataset(path, num_episodes=args.episodes, episode_length=args.length,
                               cameras=CAMERA_NAMES[:cameras], image_size=args.image_size)
    return path


def stack_samples(samples: list[dict]) -> dict:
    """Collate without the model processor: numpy arrays stacked, languages kept as a list."""
    return {key: [s[key] for s in samples] if key == "language" else np.stack([s[key] for s in samples])
            for key in samples[0]}


def per_sample_costs(dataset: GrootDataset, count: int) -> tuple[float, float]:
    """Mean milliseconds to read + decode one raw step and to transform it, in this process with one
    torch thread (as in a DataLoader worker)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    decode = transform = 0.0
    for index in rng.integers(0, len(dataset), count):
        start = time.perf_counter()
        step = dataset.raw_step(*dataset.locate(int(index)))
        middle = time.perf_counter()
        dataset.transform.apply(step)
        decode, transform = decode + middle - start, transform + time.perf_counter() - middle
    torch.set_num_threads(threads)
    return 1e3 * decode / count, 1e3 * transform / count


def collate_for(args: argparse.Namespace):
    return (GrootProcessor(ByteTokenizer(), image_size=224, num_image_tokens=256)
            if args.processor else stack_samples)


def loader_throughput(dataset: GrootDataset, args: argparse.Namespace) -> float:
    """Samples per second over --batches batches after --warmup batches."""
    collate = collate_for(args)
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=args.batch_size, shuffle=True, num_workers=args.workers, collate_fn=collate,
        persistent_workers=args.workers > 0, drop_last=True,
        generator=torch.Generator().manual_seed(0))
    needed = args.warmup + args.batches
    batches = iter(loader)
    seen = 0
    while seen < needed:  # epochs are short for small datasets: restart the iterator as needed
        try:
            next(batches)
        except StopIteration:
            batches = iter(loader)
            continue
        seen += 1
        if seen == args.warmup:
            start = time.perf_counter()
    return args.batches * args.batch_size / (time.perf_counter() - start)


def boundary_throughput(dataset: GrootDataset, args: argparse.Namespace) -> dict[str, float]:
    """Samples/s of --boundary-batches batches taken --step-ms apart, from a loader per epoch and from
    one EpochStream loader (the first batch of each is not timed)."""
    collate = collate_for(args)

    def loader_per_epoch():
        for epoch in itertools.count():
            sampler = ResumableShardedSampler(len(dataset), 0)
            sampler.set_epoch(epoch)
            yield from build_loader(dataset, sampler, args.batch_size, collate, args.workers, False)

    def one_stream():
        stream = EpochStream(len(dataset), 0, 0, 1, args.batch_size, 0, 0)
        yield from build_loader(dataset, stream, args.batch_size, collate, args.workers, False)

    rates = {}
    for name, batches in (("loader_per_epoch", loader_per_epoch()), ("epoch_stream", one_stream())):
        next(batches)
        start = time.perf_counter()
        for _ in range(args.boundary_batches):
            next(batches)
            time.sleep(args.step_ms / 1e3)
        rates[name] = args.boundary_batches * args.batch_size / (time.perf_counter() - start)
        batches.close()
    rates["consumer_limit"] = args.batch_size / (args.step_ms / 1e3)
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=2, help="DataLoader worker processes")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--cameras", type=int, nargs="+", default=[1, 3], help="camera counts to measure")
    parser.add_argument("--episodes", type=int, default=20)
    parser.add_argument("--length", type=int, default=100, help="steps per episode")
    parser.add_argument("--image-size", type=int, default=256, help="side of the recorded square frames")
    parser.add_argument("--warmup", type=int, default=3, help="batches before timing starts")
    parser.add_argument("--batches", type=int, default=10, help="timed batches")
    parser.add_argument("--processor", action=argparse.BooleanOptionalAction, default=True,
                        help="collate with GrootProcessor (float pixels, token ids), not numpy stacking")
    parser.add_argument("--boundary-batches", type=int, default=0,
                        help="also time this many batches across epoch boundaries (see above; 0: skip)")
    parser.add_argument("--step-ms", type=float, default=100.0,
                        help="with --boundary-batches: the consumer's time per batch")
    parser.add_argument("--data-dir", type=Path,
                        default=Path(tempfile.gettempdir()) / "groot_dataloader_bench",
                        help="where the synthetic datasets are written and reused")
    parser.add_argument("--output", type=Path, default=None,
                        help="JSON result file (default: benchmarks/results/dataloader_<host>.json)")
    args = parser.parse_args()
    host = socket.gethostname()
    output = args.output or Path(__file__).parent / "results" / f"dataloader_{host}.json"
    rows = []
    for cameras in args.cameras:
        path = dataset_path(args.data_dir, cameras, args)
        dataset = GrootDataset(path, data_config(cameras), "new_embodiment")
        decode_ms, transform_ms = per_sample_costs(dataset, count=20)
        rows.append({"cameras": cameras, "samples_per_s": loader_throughput(dataset, args),
                     "decode_ms_per_sample": decode_ms, "transform_ms_per_sample": transform_ms})
        if args.boundary_batches:
            rows[-1]["batches_per_epoch"] = len(dataset) // args.batch_size
            rows[-1]["epoch_boundaries"] = {"batches": args.boundary_batches, "step_ms": args.step_ms,
                                            "samples_per_s": boundary_throughput(dataset, args)}
        print(json.dumps(rows[-1]), flush=True)
    result = {"host": host, "cpu_count": os.cpu_count(), "python": platform.python_version(),
              "torch": torch.__version__, "workers": args.workers, "batch_size": args.batch_size,
              "image_size": args.image_size, "episodes": args.episodes, "length": args.length,
              "processor": args.processor, "results": rows}
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\n{'cameras':>8} {'samples/s':>10} {'decode ms':>10} {'transform ms':>13}   "
          f"({args.workers} workers, batch {args.batch_size}, {host})")
    for row in rows:
        print(f"{row['cameras']:>8} {row['samples_per_s']:>10.1f} {row['decode_ms_per_sample']:>10.2f} "
              f"{row['transform_ms_per_sample']:>13.2f}")
    print(f"written {output}")


if __name__ == "__main__":
    main()
