"""One PNG per episode: a strip of frames from each camera, then state (solid) and action (dashed)
curves for each modality key."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from groot.data.lerobot import LeRobotDataset


def frame_strip(dataset: LeRobotDataset, episode_index: int, video_key: str, count: int) -> np.ndarray:
    """`count` evenly spaced frames side by side, 2 white columns apart. uint8 [H, count * (W + 2), 3]"""
    times = dataset.episode_data(episode_index)["timestamp"]
    picks = np.linspace(0, len(times) - 1, num=min(count, len(times))).round().astype(int)
    frames = dataset.decode_frames(episode_index, video_key, times[picks])
    spaced = np.pad(frames, ((0, 0), (0, 0), (0, 2), (0, 0)), constant_values=255)
    return np.concatenate(list(spaced), axis=1)


def plot_episode(dataset: LeRobotDataset, episode_index: int, out_path: str | Path, frames: int = 6) -> Path:
    """Write the episode's figure to `out_path` (PNG) and return the path."""
    from matplotlib.figure import Figure

    data = dataset.episode_data(episode_index)
    times = data["timestamp"]
    cameras = list(dataset.modality.video)
    keys = list(dict.fromkeys([*dataset.modality.state, *dataset.modality.action]))
    heights = [1.6] * len(cameras) + [1.8] * len(keys)
    figure = Figure(figsize=(11, sum(heights) + 0.8), layout="constrained")
    axes = figure.subplots(len(heights), 1, gridspec_kw={"height_ratios": heights}, squeeze=False)[:, 0]
    task = ", ".join(dataset.episode(episode_index).tasks)
    figure.suptitle(f"{dataset.root.name} - episode {episode_index} ({len(times)} steps): {task}")
    for axis, camera in zip(axes, cameras, strict=False):
        axis.imshow(frame_strip(dataset, episode_index, camera, frames))
        axis.set_title(f"video.{camera}", loc="left", fontsize=9)
        axis.set_axis_off()
    for axis, key in zip(axes[len(cameras):], keys, strict=True):
        labelled = False  # one legend entry per dimension (colour), from the first group drawn
        for group, style in (("state", "-"), ("action", "--")):
            spec = dataset.modality.arrays(group).get(key)
            if spec is None:
                continue
            values = data[spec.original_key][:, spec.start:spec.end]
            for dim in range(spec.dim):
                axis.plot(times, values[:, dim], style, color=f"C{dim % 10}", linewidth=1.2,
                          label=None if labelled else f"dim {dim}")
            labelled = True
        axis.set_title(f"{key}  (state solid, action dashed)", loc="left", fontsize=9)
        axis.set_xlabel("time (s)", fontsize=8)
        axis.tick_params(labelsize=8)
        axis.grid(alpha=0.3)
        if axis.get_legend_handles_labels()[0]:
            axis.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out_path, dpi=100)
    return out_path
