"""Every frame of a video decoded once, kept on disk as raw uint8 and memory-mapped by every reader.

A `FrameCache` decodes each video file in full the first time one of its frames is asked for and writes

    <dir>/<key>.frames.npy   uint8 [N, H, W, 3]   every frame of the file, RGB
    <dir>/<key>.times.npy    float64 [N]          presentation time of each frame, seconds
    <dir>/<key>.json         {"fps": ..., "source": ...}   written last: its presence marks the entry complete

where `key` hashes the video's absolute path, size and modification time (an edited video gets a new
entry). Later lookups read the memory map (DataLoader workers share one copy through the page cache).
Files are written atomically (`groot.utils.files`), so workers that race on one video, or a run killed
mid-write, never leave an entry that reads wrong. It costs H * W * 3 bytes per frame on disk.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np

from groot.data.video import Picks, readable_video
from groot.errors import DatasetError
from groot.utils.files import atomic_open, atomic_write_text


class FrameCache:
    def __init__(self, directory: str | Path):
        self.directory = Path(directory)
        self._open: dict[Path, tuple[np.ndarray, np.ndarray, float]] = {}  # video -> frames, times, fps

    def check_space(self, needed_bytes: int, what: str) -> None:
        """Raise OSError, before any decoding, when `needed_bytes` of decoded frames (less what the
        directory holds already) would not fit on its disk."""
        existing = self.directory
        while not existing.exists():
            existing = existing.parent
        stored = sum(f.stat().st_size for f in self.directory.glob("*.npy")) if self.directory.is_dir() else 0
        free = shutil.disk_usage(existing).free
        if needed_bytes - stored > free:
            raise OSError(f"frame cache {self.directory}: the decoded frames of {what} need "
                          f"{_size(needed_bytes)} ({_size(stored)} stored already), the disk has "
                          f"{_size(free)} free; choose a cache directory on a larger disk or leave the "
                          "cache off")

    def pick(self, path: Path, wanted: list[float]) -> tuple[Picks, float]:
        """For each time in `wanted`, the nearest frame of `path` (ties go to the later frame, as the
        streaming decoder does). Returns (picks, fps)."""
        frames, times, fps = self._entry(path)
        picked: Picks = {}
        for t in wanted:
            after = int(np.searchsorted(times, t, side="left"))
            if after == len(times) or (after > 0 and t - times[after - 1] < times[after] - t):
                after -= 1
            picked[t] = (float(times[after]), frames[after])
        return picked, fps

    def _entry(self, path: Path) -> tuple[np.ndarray, np.ndarray, float]:
        """The opened entry of a video; its key (path, size, mtime) is read once per FrameCache, at the
        first request: every sample asks again, and a video does not change during a run."""
        if path not in self._open:
            stem = self.directory / _key(path)
            if not stem.with_suffix(".json").is_file():
                self._write(path, stem)
            fps = float(json.loads(stem.with_suffix(".json").read_text())["fps"])
            frames = np.load(f"{stem}.frames.npy", mmap_mode="r", allow_pickle=False)
            times = np.load(f"{stem}.times.npy", allow_pickle=False)
            self._open[path] = (frames, times, fps)
        return self._open[path]

    def _write(self, path: Path, stem: Path) -> None:
        frames, times, fps = decode_all(path)
        self.directory.mkdir(parents=True, exist_ok=True)
        _atomic_save(Path(f"{stem}.frames.npy"), frames)
        _atomic_save(Path(f"{stem}.times.npy"), times)
        atomic_write_text(stem.with_suffix(".json"), json.dumps({"fps": fps, "source": str(path)}))


def decode_all(path: Path) -> tuple[np.ndarray, np.ndarray, float]:
    """Every frame of a video: (uint8 [N, H, W, 3] RGB, float64 [N] seconds, fps)."""
    import av

    images, times = [], []
    with readable_video(path), av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.codec_context.thread_count = 1  # see groot.data.video: many DataLoader workers decode at once
        fps = float(stream.average_rate or stream.guessed_rate)
        for frame in container.decode(stream):
            if frame.time is not None:
                images.append(frame.to_ndarray(format="rgb24"))
                times.append(float(frame.time))
    if not images:
        raise DatasetError(path, None, "a video with decodable frames", "none")
    order = np.argsort(times, kind="stable")
    return np.stack(images)[order], np.asarray(times, np.float64)[order], fps


def _size(num_bytes: float) -> str:
    return f"{num_bytes / 1e9:.1f} GB" if num_bytes >= 1e9 else f"{num_bytes / 1e6:.1f} MB"


def _key(path: Path) -> str:
    resolved = path.resolve()
    info = resolved.stat()
    return hashlib.sha1(f"{resolved}|{info.st_size}|{info.st_mtime_ns}".encode()).hexdigest()[:20]


def _atomic_save(target: Path, array: np.ndarray) -> None:
    with atomic_open(target, "wb") as handle:
        np.save(handle, array, allow_pickle=False)
