from __future__ import annotations

import os

import numpy as np
import pytest

from groot.data import frame_cache
from groot.data.frame_cache import FrameCache
from groot.data.lerobot import LeRobotDataset
from groot.data.synthetic import synthetic_frames
from groot.data.video import decode_frames, encode_video
from groot.errors import DatasetError


@pytest.fixture()
def clip(tmp_path):
    """25 frames at 10 fps whose red channel encodes the frame number."""
    frames = synthetic_frames(episode=2, camera=1, length=25, height=24, width=32)
    frames[..., 0] = (np.arange(25) * 10)[:, None, None]
    path = tmp_path / "clip.mp4"
    encode_video(path, frames, fps=10)
    return path


def test_cached_frames_equal_decoded_frames(clip, tmp_path, monkeypatch):
    times = [2.4, 0.0, 1.05, 0.95, 0.149, 0.151, 2.0, 0.0, 2.44]  # unsorted, repeats, ties, last frame
    cache = FrameCache(tmp_path / "cache")
    expected = decode_frames(clip, times)
    np.testing.assert_array_equal(decode_frames(clip, times, cache=cache), expected)
    assert sorted(p.suffix for p in (tmp_path / "cache").iterdir()) == [".json", ".npy", ".npy"]
    # a new cache object (another worker) reads the stored copy without decoding the video again
    monkeypatch.setattr(frame_cache, "decode_all", lambda path: pytest.fail("decoded a cached video again"))
    np.testing.assert_array_equal(decode_frames(clip, times, cache=FrameCache(tmp_path / "cache")), expected)


def test_cache_keeps_the_tolerance_check(clip, tmp_path):
    with pytest.raises(DatasetError, match="timestamp"):
        decode_frames(clip, [3.5], cache=FrameCache(tmp_path / "cache"))


def test_rewritten_video_gets_a_new_entry(clip, tmp_path):
    cache_dir = tmp_path / "cache"
    before = decode_frames(clip, [1.0], cache=FrameCache(cache_dir))
    frames = synthetic_frames(episode=2, camera=1, length=25, height=24, width=32)
    frames[..., 0] = 255 - (np.arange(25) * 10)[:, None, None]
    encode_video(clip, frames, fps=10)
    os.utime(clip, ns=(1, 1))  # a different modification time even on coarse clocks
    after = decode_frames(clip, [1.0], cache=FrameCache(cache_dir))
    np.testing.assert_array_equal(after, decode_frames(clip, [1.0]))
    assert not np.array_equal(before, after)
    assert len(list(cache_dir.glob("*.json"))) == 2


def test_dataset_reads_the_same_frames_through_the_cache(dataset_root, layout, tmp_path):
    plain = LeRobotDataset(dataset_root)
    cached = LeRobotDataset(dataset_root, frame_cache_dir=tmp_path / "cache")
    for episode in plain.episodes:
        times = np.arange(episode.length) / plain.fps
        for camera in layout.cameras:
            np.testing.assert_array_equal(cached.decode_frames(episode.index, camera, times),
                                          plain.decode_frames(episode.index, camera, times))


def test_cache_that_would_not_fit_is_refused_before_decoding(dataset_root, layout, tmp_path, monkeypatch):
    height, width = layout.size
    needed = layout.num_episodes * layout.length * len(layout.cameras) * 3 * height * width
    assert LeRobotDataset(dataset_root).decoded_video_bytes() == needed
    usage = frame_cache.shutil.disk_usage(tmp_path)
    monkeypatch.setattr(frame_cache.shutil, "disk_usage", lambda path: usage._replace(free=needed // 2))
    expected = (rf"need {needed / 1e6:.1f} MB \(0\.0 MB stored already\), "
                rf"the disk has {needed / 2e6:.1f} MB free")
    with pytest.raises(OSError, match=expected):
        LeRobotDataset(dataset_root, frame_cache_dir=tmp_path / "cache")
    assert not (tmp_path / "cache").exists()
