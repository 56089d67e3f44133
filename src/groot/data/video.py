"""Decode the frames nearest to given timestamps, and encode H.264 videos (one or many episodes a file).

Every call opens its own container and closes it before returning, so the functions are safe in forked
DataLoader workers: nothing is shared between processes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fractions
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from groot.errors import DatasetError

if TYPE_CHECKING:
    from groot.data.frame_cache import FrameCache

VideoBackend = Literal["pyav", "opencv", "torchcodec"]
VIDEO_BACKENDS = ("pyav", "opencv", "torchcodec")
# requests further apart than this are served by a fresh seek instead of decoding everything between
RESEEK_GAP_S = 1.0
# requested time -> (time of the frame picked for it, its RGB pixels [H, W, 3])
Picks = dict[float, tuple[float, np.ndarray]]


def decode_frames(path: str | Path, timestamps_s: Sequence[float] | np.ndarray,
                  backend: VideoBackend = "pyav", tolerance_s: float | None = None,
                  cache: FrameCache | None = None) -> np.ndarray:
    """The frame shown nearest to each timestamp (seconds from the start of the file).

    Decodes only what is needed: seeks to the keyframe before the first requested time and decodes
    forward. Raises DatasetError if the nearest frame is more than `tolerance_s` away (default: one
    frame period, i.e. the time lies outside the video or the video is missing frames). With a `cache`,
    frames come from its decoded copy of the file (PyAV decodes it the first time) instead.
    Returns uint8 [T, H, W, 3] (RGB), in the order of `timestamps_s`.
    """
    path = Path(path)
    times = np.asarray(timestamps_s, dtype=np.float64).reshape(-1)
    if not path.is_file():
        raise DatasetError(path, None, "a video file", "no such file")
    if times.size == 0:
        raise ValueError(f"decode_frames({path}): no timestamps requested")
    decoders = {"pyav": _decode_pyav, "opencv": _decode_opencv, "torchcodec": _decode_torchcodec}
    if backend not in decoders:
        raise ValueError(f"video backend {backend!r} is not one of {', '.join(VIDEO_BACKENDS)}")
    wanted = sorted(set(times.tolist()))
    picked, fps = cache.pick(path, wanted) if cache is not None else decoders[backend](path, wanted)
    tolerance = 1.0 / fps if tolerance_s is None else tolerance_s
    for t in wanted:
        frame_time = picked[t][0]
        if abs(frame_time - t) > tolerance + 1e-9:
            raise DatasetError(path, "timestamp", f"a frame within {tolerance:.4f} s of {t:.4f} s",
                               f"the nearest frame at {frame_time:.4f} s")
    return np.stack([picked[t][1] for t in times.tolist()])


@dataclasses.dataclass(frozen=True)
class VideoProbe:
    num_frames: int
    fps: float
    height: int
    width: int
    end_s: float  # presentation time of the last frame plus one frame period


def probe_video(path: str | Path, count_packets: bool = True) -> VideoProbe:
    """Frame count, rate, size and end time of a video, without decoding: from every packet's time
    (`count_packets`), else from the container header alone (falling back to the packets when the
    header does not record a frame count). A file FFmpeg cannot read raises DatasetError."""
    import av

    path = Path(path)
    if not path.is_file():
        raise DatasetError(path, None, "a video file", "no such file")
    with readable_video(path), av.open(str(path)) as container:
        if not container.streams.video:
            raise DatasetError(path, None, "a file with a video stream", "no video stream")
        stream = container.streams.video[0]
        fps = float(stream.average_rate or stream.guessed_rate or 0)
        if fps <= 0:
            raise DatasetError(path, None, "a video with a frame rate", "none")
        height, width = stream.codec_context.height, stream.codec_context.width
        if not count_packets and stream.frames > 0 and stream.duration is not None:
            end_s = float(((stream.start_time or 0) + stream.duration) * stream.time_base)
            return VideoProbe(int(stream.frames), fps, height, width, end_s)
        pts = [p.pts for p in container.demux(stream) if p.pts is not None]
        if not pts:
            raise DatasetError(path, None, "a video with frames", "no frames")
        end_s = float(max(pts) * stream.time_base) + 1.0 / fps
        return VideoProbe(len(pts), fps, height, width, end_s)


@contextlib.contextmanager
def readable_video(path: Path) -> Iterator[None]:
    """FFmpeg's errors on a truncated, empty or foreign file, raised inside, as DatasetError naming it."""
    import av

    try:
        yield
    except av.FFmpegError as e:
        reason = str(e).replace(f": '{path}'", "").splitlines()[0] if str(e) else type(e).__name__
        raise DatasetError(path, None, "a readable video", reason) from e


class _Pick:
    """A decoded frame whose RGB array is made only if it is chosen."""

    def __init__(self, frame: Any):
        self.time = float(frame.time)
        self._frame, self._rgb = frame, None

    def rgb(self) -> np.ndarray:
        if self._rgb is None:
            self._rgb = self._frame.to_ndarray(format="rgb24")
        return self._rgb


def _clusters(times: list[float]) -> list[list[float]]:
    """Sorted times split where consecutive requests are more than RESEEK_GAP_S apart."""
    groups = [[times[0]]]
    for t in times[1:]:
        if t - groups[-1][-1] > RESEEK_GAP_S:
            groups.append([t])
        else:
            groups[-1].append(t)
    return groups


def _nearest_in_stream(path: Path, frames: Any, wanted: list[float]) -> Picks:
    """Walk decoded frames forward; each sorted time gets whichever neighbour frame is nearer."""
    out: Picks = {}
    prev: _Pick | None = None
    i = 0
    for frame in frames:
        if frame.time is None:
            continue
        current = _Pick(frame)
        while i < len(wanted) and wanted[i] <= current.time:
            t = wanted[i]
            best = current if prev is None or current.time - t <= t - prev.time else prev
            out[t] = (best.time, best.rgb())
            i += 1
        if i == len(wanted):
            return out
        prev = current
    if prev is None:
        raise DatasetError(path, "timestamp", f"decodable frames near {wanted[0]:.4f} s", "none")
    for t in wanted[i:]:  # past the last frame: the last frame is the nearest
        out[t] = (prev.time, prev.rgb())
    return out


def _decode_pyav(path: Path, wanted: list[float]) -> tuple[Picks, float]:
    import av

    picked: Picks = {}
    with readable_video(path), av.open(str(path)) as container:
        stream = container.streams.video[0]
        # One decode per DataLoader worker: FFmpeg's default starts a thread per core at every open,
        # which on a many-core machine costs more than the few frames decoded here.
        stream.codec_context.thread_count = 1
        fps = float(stream.average_rate or stream.guessed_rate)
        for group in _clusters(wanted):
            target = max(0, int(group[0] / stream.time_base))
            container.seek(target, stream=stream, backward=True, any_frame=False)
            picked.update(_nearest_in_stream(path, container.decode(stream), group))
    return picked, fps


def _decode_opencv(path: Path, wanted: list[float]) -> tuple[Picks, float]:
    """OpenCV addresses frames by index: index = round(t * fps), as the original's opencv backend."""
    import cv2

    cv2.setNumThreads(1)  # one decode per DataLoader worker: OpenCV's own thread pool only oversubscribes

    capture = cv2.VideoCapture(str(path))
    try:
        if not capture.isOpened():
            raise DatasetError(path, None, "a video OpenCV can open", "an unreadable file")
        fps = float(capture.get(cv2.CAP_PROP_FPS))
        count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
        picked: Picks = {}
        position = 0
        for t in wanted:
            index = min(max(round(t * fps), 0), count - 1)
            if index != position:
                capture.set(cv2.CAP_PROP_POS_FRAMES, index)
            ok, bgr = capture.read()
            if not ok:
                raise DatasetError(path, "timestamp", f"a decodable frame {index} at {t:.4f} s",
                                   "a read error")
            position = index + 1
            picked[t] = (index / fps, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
        return picked, fps
    finally:
        capture.release()


def _decode_torchcodec(path: Path, wanted: list[float]) -> tuple[Picks, float]:
    try:
        from torchcodec.decoders import VideoDecoder
    except ImportError as e:
        raise ImportError("video backend 'torchcodec' needs the torchcodec package "
                          "(pip install torchcodec); or use backend 'pyav' or 'opencv'") from e
    decoder = VideoDecoder(str(path), dimension_order="NHWC")
    batch = decoder.get_frames_played_at(seconds=wanted)
    frames, pts = batch.data.numpy(), batch.pts_seconds.numpy()
    picked = {t: (float(pts[i]), frames[i]) for i, t in enumerate(wanted)}
    return picked, float(decoder.metadata.average_fps)


class VideoEncoder:
    """H.264 (libx264, yuv420p) mp4 writer that takes one or more episodes back to back.

    yuv420p needs even sizes: odd heights / widths are padded by repeating the last row / column, and
    readers crop back to the resolution recorded in info.json. Each `append` returns the episode's
    (from_timestamp, to_timestamp) in the file, as LeRobot v3.0 stores them.
    """

    def __init__(self, path: str | Path, fps: float, crf: int = 23, gop: int = 4):
        self.path, self.fps, self.crf, self.gop = Path(path), fps, crf, gop
        self._container: Any = None
        self._stream: Any = None
        self._size: tuple[int, int] | None = None  # (H, W) of the frames given, before padding
        self._num_frames = 0

    def append(self, frames: np.ndarray) -> tuple[float, float]:
        """frames: uint8 [T, H, W, 3] RGB -> (from_timestamp, to_timestamp) seconds in this file."""
        frames = np.asarray(frames)
        if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
            raise ValueError(f"{self.path}: frames must be uint8 [T, H, W, 3], got {frames.dtype} "
                             f"{list(frames.shape)}")
        if self._stream is None:
            self._open(frames.shape[1], frames.shape[2])
        if frames.shape[1:3] != self._size:
            raise ValueError(f"{self.path}: every episode in one file must share the frame size "
                             f"{self._size}, got {frames.shape[1:3]}")
        import av

        start = self._num_frames
        pad = ((0, 0), (0, self._stream.height - frames.shape[1]), (0, self._stream.width - frames.shape[2]),
               (0, 0))
        for image in np.pad(frames, pad, mode="edge"):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts = self._num_frames
            self._container.mux(self._stream.encode(frame))
            self._num_frames += 1
        return start / self.fps, self._num_frames / self.fps

    def close(self) -> None:
        if self._container is not None:
            self._container.mux(self._stream.encode(None))
            self._container.close()
            self._container = None

    def __enter__(self) -> VideoEncoder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _open(self, height: int, width: int) -> None:
        import av

        rate = fractions.Fraction(self.fps).limit_denominator(10_000)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._container = av.open(str(self.path), mode="w")
        self._stream = self._container.add_stream("libx264", rate=rate)
        self._stream.height, self._stream.width = height + height % 2, width + width % 2
        self._stream.pix_fmt = "yuv420p"
        self._stream.time_base = 1 / rate
        self._stream.options = {"crf": str(self.crf), "g": str(self.gop)}
        self._size = (height, width)


def encode_video(path: str | Path, frames: np.ndarray, fps: float, crf: int = 23, gop: int = 4) -> None:
    """Write frames uint8 [T, H, W, 3] as one H.264 mp4."""
    with VideoEncoder(path, fps, crf=crf, gop=gop) as encoder:
        encoder.append(frames)
