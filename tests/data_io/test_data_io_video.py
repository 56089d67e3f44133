from __future__ import annotations

import numpy as np
import pytest

from groot.data.synthetic import synthetic_frames
from groot.data.video import VideoEncoder, decode_frames, encode_video, probe_video
from groot.errors import DatasetError


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """30 frames at 10 fps whose red channel encodes the frame number."""
    frames = synthetic_frames(episode=1, camera=0, length=30, height=40, width=56)
    frames[..., 0] = (np.arange(30) * 8)[:, None, None]
    path = tmp_path_factory.mktemp("video") / "clip.mp4"
    encode_video(path, frames, fps=10)
    return path, frames


def _frame_numbers(frames):
    return np.round(frames[..., 0].astype(float).mean(axis=(1, 2)) / 8).astype(int).tolist()


@pytest.mark.parametrize("backend", ["pyav", "opencv"])
def test_nearest_frame_in_request_order(clip, backend):
    if backend == "opencv":
        pytest.importorskip("cv2")  # optional backend (dev extra)
    path, frames = clip
    times = [2.9, 0.0, 1.04, 0.96, 2.0, 0.0]  # unsorted, repeated, between frames, far apart
    decoded = decode_frames(path, times, backend=backend)
    assert decoded.shape == (6, 40, 56, 3) and decoded.dtype == np.uint8
    assert _frame_numbers(decoded) == [29, 0, 10, 10, 20, 0]
    assert np.abs(decoded.astype(int) - frames[[29, 0, 10, 10, 20, 0]]).mean() < 8


def test_backends_agree(clip):
    pytest.importorskip("cv2")
    path, _ = clip
    times = np.arange(0, 3.0, 0.3)
    pyav, opencv = decode_frames(path, times, "pyav"), decode_frames(path, times, "opencv")
    assert np.abs(pyav.astype(int) - opencv).max() <= 2


def test_time_outside_video_is_an_error(clip):
    path, _ = clip
    with pytest.raises(DatasetError, match=r"clip.mp4: key 'timestamp': expected a frame within 0.1000 s of "
                                           r"3.5000 s, found the nearest frame at 2.9000 s"):
        decode_frames(path, [0.0, 3.5])
    assert _frame_numbers(decode_frames(path, [3.5], tolerance_s=1.0)) == [29]


def test_torchcodec_missing_is_explained(clip):
    try:
        import torchcodec  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match="pip install torchcodec"):
            decode_frames(clip[0], [0.0], backend="torchcodec")
    else:
        assert _frame_numbers(decode_frames(clip[0], [1.0], backend="torchcodec")) == [10]


def test_odd_sizes_are_padded_to_even(tmp_path):
    frames = synthetic_frames(0, 2, 5, 21, 31)
    encode_video(tmp_path / "odd.mp4", frames, fps=5)
    probe = probe_video(tmp_path / "odd.mp4")
    assert (probe.height, probe.width, probe.num_frames) == (22, 32, 5)
    decoded = decode_frames(tmp_path / "odd.mp4", [0.4])[:, :21, :31]
    assert np.abs(decoded.astype(int) - frames[2:3]).mean() < 8


def test_encoder_appends_episodes_back_to_back(tmp_path):
    first, second = synthetic_frames(0, 0, 7, 32, 32), synthetic_frames(1, 1, 5, 32, 32)
    with VideoEncoder(tmp_path / "many.mp4", fps=10) as encoder:
        spans = [encoder.append(first), encoder.append(second)]
    assert spans == [pytest.approx((0.0, 0.7)), pytest.approx((0.7, 1.2))]
    probe = probe_video(tmp_path / "many.mp4")
    assert probe.num_frames == 12 and probe.end_s == pytest.approx(1.2)
    header = probe_video(tmp_path / "many.mp4", count_packets=False)
    assert (header.num_frames, header.end_s, header.height) == (12, pytest.approx(1.2), 32)
    decoded = decode_frames(tmp_path / "many.mp4", [spans[1][0] + 0.2])
    assert np.abs(decoded.astype(int) - second[2:3]).mean() < 8


def test_encoder_rejects_bad_frames(tmp_path):
    with VideoEncoder(tmp_path / "bad.mp4", fps=10) as encoder:
        with pytest.raises(ValueError, match=r"uint8 \[T, H, W, 3\]"):
            encoder.append(np.zeros((2, 8, 8, 3), np.float32))
        encoder.append(np.zeros((2, 8, 8, 3), np.uint8))
        with pytest.raises(ValueError, match="share the frame size"):
            encoder.append(np.zeros((2, 10, 8, 3), np.uint8))


def test_missing_file(tmp_path):
    with pytest.raises(DatasetError, match="nothing.mp4: expected a video file, found no such file"):
        decode_frames(tmp_path / "nothing.mp4", [0.0])
