"""`groot data ...`: inspect, validate, summarise and plot LeRobot datasets."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from groot.utils.cli_args import add_command, add_group, arg

PATH_HELP = "dataset root: the folder that holds meta/info.json"


@dataclass
class InfoArgs:
    path: str = arg(help=PATH_HELP, positional=True)


@dataclass
class ValidateArgs:
    path: str = arg(help=PATH_HELP, positional=True)
    decode: bool = arg(True, "also decode the first and last frame of every episode of every camera")
    video_backend: Literal["pyav", "opencv", "torchcodec"] = arg("pyav", "video decoder used with --decode")


@dataclass
class StatsArgs:
    path: str = arg(help=PATH_HELP, positional=True)
    refresh: bool = arg(False, "recompute the statistics even if meta/stats.json is present and valid")
    write: bool = arg(False, "save the statistics to meta/stats.json (otherwise the dataset is only read)")


@dataclass
class PlotArgs:
    path: str = arg(help=PATH_HELP, positional=True)
    episodes: list[int] = arg([0], "episode indices to plot, one PNG each")
    out: str = arg("plots", "folder to write the PNGs into")
    frames: int = arg(6, "frames shown per camera strip")


def register(subparsers: Any) -> None:
    group = add_group(subparsers, "data", "Inspect, validate, summarise and plot LeRobot datasets "
                      "(v2.0 / v2.1 / v3.0 with meta/modality.json).")
    add_command(group, "info", InfoArgs, run_info,
                "Print version, episodes, frames, fps, cameras, modality keys and tasks.")
    add_command(group, "validate", ValidateArgs, run_validate,
                "Check every episode's parquet and video; exit 0 if the dataset is sound, 2 with the "
                "precise problem otherwise.")
    add_command(group, "stats", StatsArgs, run_stats,
                "Print the per-key statistics (from meta/stats.json, or computed when it is missing or "
                "stale); --write saves them.")
    add_command(group, "plot", PlotArgs, run_plot,
                "Write one PNG per episode: camera frame strips plus state and action curves per key.")


def run_info(cfg: InfoArgs) -> int:
    from groot.data.lerobot import LeRobotDataset

    ds = LeRobotDataset(cfg.path)
    print(f"dataset   {ds.root}")
    print(f"version   {ds.version}   robot {ds.info.get('robot_type', 'unknown')}")
    print(f"episodes  {len(ds.episodes)}   frames {ds.num_frames}   fps {ds.fps:g}")
    print("cameras")
    for key, original in ds.modality.video.items():
        height, width = ds.video_resolution(key)
        print(f"  {'video.' + key:<30} {height}x{width}  ({original})")
    for group in ("state", "action"):
        print(group)
        for key, spec in ds.modality.arrays(group).items():
            extras = "" if spec.absolute else "  relative"
            extras += f"  {spec.rotation_type}" if spec.rotation_type else ""
            print(f"  {group + '.' + key:<30} dim {spec.dim:<3} "
                  f"{spec.original_key}[{spec.start}:{spec.end}]{extras}")
    print(f"tasks ({len(ds.tasks)})")
    for index, task in sorted(ds.tasks.items()):
        print(f"  {index:>4}  {task}")
    return 0


def run_validate(cfg: ValidateArgs) -> int:
    from groot.data.lerobot import LeRobotDataset, validate_dataset

    ds = LeRobotDataset(cfg.path, video_backend=cfg.video_backend)
    summary = validate_dataset(ds, decode=cfg.decode)
    print(f"OK {ds.root}: {ds.version}, {summary.episodes} episodes, {summary.frames} frames, "
          f"{summary.video_files} video files checked, {summary.decoded_frames} frames decoded")
    return 0


def run_stats(cfg: StatsArgs) -> int:
    from groot.data.lerobot import LeRobotDataset
    from groot.data.stats import STAT_NAMES, load_or_compute_stats

    ds = LeRobotDataset(cfg.path)
    path = ds.root / "meta" / "stats.json"
    before = path.read_bytes() if path.is_file() else None
    stats = load_or_compute_stats(ds, refresh=cfg.refresh, write=cfg.write)
    if cfg.write:
        print(f"{path} ({'unchanged' if path.read_bytes() == before else 'written'})")
    else:
        source = "computed from the episodes" if before is None or cfg.refresh else f"read from {path}"
        print(f"statistics {source} (not saved; --write saves them to {path})")
    print(f"{'key':<32}" + "".join(f"{name:>11}" for name in STAT_NAMES))
    for group in ("state", "action"):
        for key, spec in ds.modality.arrays(group).items():
            column = stats[spec.original_key]
            for dim in range(spec.start, spec.end):
                label = f"{group}.{key}[{dim - spec.start}]"
                print(f"{label:<32}" + "".join(f"{column[name][dim]:>11.4g}" for name in STAT_NAMES))
    return 0


def run_plot(cfg: PlotArgs) -> int:
    from pathlib import Path

    from tqdm import tqdm

    from groot.data.lerobot import LeRobotDataset
    from groot.data.plot import plot_episode

    ds = LeRobotDataset(cfg.path)
    for index in cfg.episodes:
        ds.episode(index)  # unknown episodes fail before any plotting
    for index in tqdm(cfg.episodes, desc="plot", unit="episode", leave=False):
        path = plot_episode(ds, index, Path(cfg.out) / f"{ds.root.name}_episode_{index:06d}.png", cfg.frames)
        print(path)
    return 0
