"""Read LeRobot datasets, layouts v2.0 / v2.1 (one parquet and one mp4 per episode) and v3.0 (many
episodes per parquet / mp4 file, episode index in `meta/episodes/`), plus GR00T's `meta/modality.json`.

Opening reads only `meta/`. Parquet and video files are opened on demand and closed right after, so a
dataset object can be handed to forked DataLoader workers; each process keeps its own small caches.
"""

from __future__ import annotations

import dataclasses
import json
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from groot.data import video
from groot.data.frame_cache import FrameCache
from groot.data.modality import ModalitySpec
from groot.errors import DatasetError
from groot.finite import first_nonfinite

SUPPORTED_VERSIONS = ("v2.0", "v2.1", "v3.0")
NUMERIC_DTYPES = ("float16", "float32", "float64", "int8", "int16", "int32", "int64", "uint8", "bool")
V3_EPISODE_COLUMNS = ("episode_index", "length", "tasks", "data/chunk_index", "data/file_index")


@dataclasses.dataclass(frozen=True)
class VideoSegment:
    """Where one episode of one camera lives: `from_s` is the episode's first frame time in the file."""

    path: Path
    from_s: float


@dataclasses.dataclass(frozen=True)
class EpisodeInfo:
    index: int
    length: int
    tasks: list[str]
    data_path: Path  # the parquet file holding this episode's rows
    videos: dict[str, VideoSegment]  # original video key -> segment


class LeRobotDataset:
    """One LeRobot dataset on disk. `.episode_data(i)` gives its columns, `.decode_frames(i, key, t)` its
    frames; `video_key`s are modality keys (`front`), not LeRobot keys (`observation.images.front`)."""

    def __init__(self, root: str | Path, video_backend: video.VideoBackend = "pyav",
                 cache_episodes: int = 64, frame_cache_dir: str | Path | None = None):
        self.root = Path(root)
        self.frame_cache = FrameCache(frame_cache_dir) if frame_cache_dir is not None else None
        if video_backend not in video.VIDEO_BACKENDS:
            raise ValueError(f"video_backend {video_backend!r} is not one of "
                             f"{', '.join(video.VIDEO_BACKENDS)}")
        self.video_backend = video_backend
        self.info = _load_info(self.root)
        self.version: str = self.info["codebase_version"]
        self.fps = float(self.info["fps"])
        self.modality = ModalitySpec.load(self.root / "meta" / "modality.json")
        self.vector_widths = _vector_widths(self.info)  # {column: D} of every 1-D numeric feature
        self.modality.check_columns(self.vector_widths, "meta/modality.json", "meta/info.json features")
        self._check_video_features()
        if self.version == "v3.0":
            self.tasks = _load_tasks_v3(self.root)
            self.episodes = _load_episodes_v3(self.root, self.info, self.modality)
        else:
            self.tasks = _load_tasks_v2(self.root)
            self.episodes = _load_episodes_v2(self.root, self.info, self.modality, self.fps)
        self._episode_by_index = {episode.index: episode for episode in self.episodes}
        self._cache_size = cache_episodes
        self._episode_cache: OrderedDict[int, dict[str, np.ndarray]] = OrderedDict()
        self._file_cache: OrderedDict[Path, Any] = OrderedDict()  # v3.0: last parquet files read
        if self.frame_cache is not None:
            self.frame_cache.check_space(self.decoded_video_bytes(), str(self.root))

    def __repr__(self) -> str:
        return (f"LeRobotDataset({str(self.root)!r}, version={self.version}, episodes={len(self.episodes)}, "
                f"frames={self.num_frames}, fps={self.fps:g})")

    @property
    def num_frames(self) -> int:
        return sum(episode.length for episode in self.episodes)

    def episode(self, episode_index: int) -> EpisodeInfo:
        if episode_index not in self._episode_by_index:
            raise KeyError(f"{self.root}: no episode {episode_index} (the dataset has {len(self.episodes)})")
        return self._episode_by_index[episode_index]

    def decoded_video_bytes(self) -> int:
        """Bytes of every camera's frames decoded to uint8 RGB."""
        return self.num_frames * sum(3 * h * w for h, w in map(self.video_resolution, self.modality.video))

    def video_resolution(self, video_key: str) -> tuple[int, int]:
        """(H, W) of a camera, from its info.json feature."""
        feature = self.info["features"][self._original_video_key(video_key)]
        names = list(feature["names"])
        return int(feature["shape"][names.index("height")]), int(feature["shape"][names.index("width")])

    def episode_data(self, episode_index: int) -> dict[str, np.ndarray]:
        """Every parquet column of one episode; vector columns stacked to float32 [T, D], others [T]."""
        if episode_index in self._episode_cache:
            self._episode_cache.move_to_end(episode_index)
            return self._episode_cache[episode_index]
        episode = self.episode(episode_index)
        table = self._read_episode_table(episode)
        source = str(episode.data_path.relative_to(self.root))
        if table.num_rows != episode.length:
            raise DatasetError(source, "episode_index", f"{episode.length} rows for episode {episode.index} "
                               "(its length in meta)", f"{table.num_rows} rows")
        data = {name: column_to_numpy(table.column(name), source, name) for name in table.column_names}
        for column in self.modality.column_widths():
            if column not in data:
                raise DatasetError(source, column, "a column (a state / action column of meta/modality.json)",
                                   "none")
        for column, width in self.vector_widths.items():
            found = data[column].shape[1] if column in data and data[column].ndim == 2 else 1
            if column in data and found != width:
                raise DatasetError(source, column, f"vectors of width {width} (meta/info.json)",
                                   f"width {found}")
        for column, values in data.items():
            bad = first_nonfinite(values)
            if bad is not None:
                dim = f", dim {bad[1]}" if len(bad) > 1 else ""
                raise DatasetError(source, column, "finite numbers",
                                   f"{values[bad]} in episode {episode.index}, row {bad[0]}{dim}")
        self._check_task_indices(data, source, episode.index)
        for values in data.values():
            values.flags.writeable = False  # shared through the cache: callers must copy to modify
        self._episode_cache[episode_index] = data
        if len(self._episode_cache) > self._cache_size:
            self._episode_cache.popitem(last=False)
        return data

    def decode_frames(self, episode_index: int, video_key: str,
                      timestamps: Sequence[float] | np.ndarray) -> np.ndarray:
        """Frames of camera `video_key` at in-episode times (the parquet `timestamp` values).
        Returns uint8 [T, H, W, 3]."""
        segment = self.episode(episode_index).videos[self._original_video_key(video_key)]
        if not segment.path.is_file():
            raise DatasetError(segment.path, None,
                               f"the video of episode {episode_index}, camera {video_key!r}", "no such file")
        times = segment.from_s + np.asarray(timestamps, dtype=np.float64)
        frames = video.decode_frames(segment.path, times, backend=self.video_backend, cache=self.frame_cache)
        height, width = self.video_resolution(video_key)
        return frames[:, :height, :width]  # odd sizes were padded to even for yuv420p

    def _check_task_indices(self, data: dict[str, np.ndarray], source: str, episode_index: int) -> None:
        """`task_index` and the annotation columns hold indices of listed tasks."""
        tasks_file = "meta/tasks.parquet" if self.version == "v3.0" else "meta/tasks.jsonl"
        for column in dict.fromkeys(["task_index", *self.modality.annotation.values()]):
            if column not in data:
                continue
            unknown = ~np.isin(data[column], list(self.tasks))
            if unknown.any():
                row = int(np.argmax(unknown))
                raise DatasetError(source, column, f"task indices listed in {tasks_file} "
                                   f"({', '.join(map(str, sorted(self.tasks)))})",
                                   f"{data[column][row]} in episode {episode_index}, row {row}")

    def _original_video_key(self, video_key: str) -> str:
        if video_key not in self.modality.video:
            raise KeyError(f"{self.root}: no camera {video_key!r}; modality.json has "
                           f"{', '.join(self.modality.video) or 'none'}")
        return self.modality.video[video_key]

    def _check_video_features(self) -> None:
        features = self.info["features"]
        for key, original in self.modality.video.items():
            feature = features.get(original)
            if not isinstance(feature, Mapping) or feature.get("dtype") != "video":
                found = "no such feature" if feature is None else f"dtype {feature.get('dtype')!r}"
                raise DatasetError("meta/info.json", f"features.{original}",
                                   f"a video feature (camera {key!r} of meta/modality.json)", found)
            names, shape = feature.get("names"), feature.get("shape")
            if not (isinstance(names, list) and isinstance(shape, list) and len(names) == len(shape) == 3
                    and {"height", "width"} <= set(names) and ({"channel", "channels"} & set(names))):
                raise DatasetError("meta/info.json", f"features.{original}",
                                   "shape [3 ints] with names height, width, channel(s)",
                                   f"shape {shape}, names {names}")

    def _read_episode_table(self, episode: EpisodeInfo) -> Any:
        table = self._read_parquet(episode.data_path)
        if self.version != "v3.0":
            return table
        if "episode_index" not in table.column_names:
            raise DatasetError(episode.data_path.relative_to(self.root), "episode_index", "a column", "none")
        return table.filter(pc.equal(table.column("episode_index"), episode.index))

    def _read_parquet(self, path: Path) -> Any:
        """v2 files are read whole per episode; v3 files (many episodes) are kept for the next episode."""
        if path in self._file_cache:
            return self._file_cache[path]
        if not path.is_file():
            raise DatasetError(path, None, "the parquet file of an episode (data_path of meta/info.json)",
                               "no such file")
        table = read_parquet(path, self.root)
        if self.version == "v3.0":
            self._file_cache[path] = table
            if len(self._file_cache) > 2:
                self._file_cache.popitem(last=False)
        return table


def column_to_numpy(column: Any, source: str, name: str) -> np.ndarray:
    """pyarrow column -> numpy: list columns to float32 [T, D] (all rows of one width), scalars to [T]."""
    array = column.combine_chunks()
    if not (pa.types.is_list(array.type) or pa.types.is_large_list(array.type)
            or pa.types.is_fixed_size_list(array.type)):
        return array.to_numpy(zero_copy_only=False)
    lengths = pc.list_value_length(array).to_numpy(zero_copy_only=False)
    width = int(lengths[0]) if len(lengths) else 0
    if len(lengths) and not (lengths == width).all():
        raise DatasetError(source, name, f"vectors of one width ({width})",
                           f"widths {sorted(set(lengths.tolist()))}")
    values = array.flatten().to_numpy(zero_copy_only=False)
    return values.astype(np.float32).reshape(len(array), width)


def read_parquet(path: Path, root: Path, columns: Sequence[str] | None = None) -> Any:
    """A parquet file (or its `columns`) as a pyarrow Table; a file pyarrow cannot read or that lacks one
    of `columns` raises DatasetError naming it."""
    try:
        if columns is not None:
            names = pq.read_schema(path).names
            for column in columns:
                if column not in names:
                    raise DatasetError(_relative(path, root), column, "a column", "none")
        return pq.read_table(path, columns=columns)
    except (pa.ArrowException, OSError) as e:
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise DatasetError(_relative(path, root), None, "a readable parquet file", reason) from e


def _relative(path: Path, root: Path) -> Path:
    return path.relative_to(root) if path.is_relative_to(root) else path


def _read_json(path: Path, root: Path) -> Any:
    if not path.is_file():
        raise DatasetError(path, None, "a LeRobot metadata file", "no such file")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DatasetError(path.relative_to(root), None, "valid JSON", f"{type(e).__name__}: {e}") from e


def _load_info(root: Path) -> dict[str, Any]:
    source = "meta/info.json"
    info = _read_json(root / "meta" / "info.json", root)
    if not isinstance(info, dict):
        raise DatasetError(source, None, "a JSON object", type(info).__name__)
    if info.get("codebase_version") not in SUPPORTED_VERSIONS:
        raise DatasetError(source, "codebase_version", f"one of {', '.join(SUPPORTED_VERSIONS)}",
                           repr(info.get("codebase_version")))
    fps = info.get("fps")
    if isinstance(fps, bool) or not isinstance(fps, (int, float)) or fps <= 0:
        raise DatasetError(source, "fps", "a positive number", repr(fps))
    chunks_size = info.get("chunks_size")
    if isinstance(chunks_size, bool) or not isinstance(chunks_size, int) or chunks_size <= 0:
        raise DatasetError(source, "chunks_size", "a positive integer", repr(chunks_size))
    if not isinstance(info.get("data_path"), str):
        raise DatasetError(source, "data_path", "a path pattern string", repr(info.get("data_path")))
    if not isinstance(info.get("features"), dict):
        raise DatasetError(source, "features", "an object of features", repr(info.get("features")))
    return info


def _vector_widths(info: Mapping[str, Any]) -> dict[str, int]:
    widths = {}
    for name, feature in info["features"].items():
        if not isinstance(feature, Mapping):
            raise DatasetError("meta/info.json", f"features.{name}", "an object with dtype and shape",
                               repr(feature))
        shape = feature.get("shape")
        if feature.get("dtype") in NUMERIC_DTYPES and isinstance(shape, list) and len(shape) == 1:
            widths[name] = int(shape[0])
    return widths


def _video_path_pattern(info: Mapping[str, Any], modality: ModalitySpec) -> str:
    pattern = info.get("video_path")
    if modality.video and not isinstance(pattern, str):
        raise DatasetError("meta/info.json", "video_path", "a path pattern string (the dataset has cameras)",
                           repr(pattern))
    return pattern or ""


def _read_jsonl(path: Path, root: Path) -> list[tuple[str, dict[str, Any]]]:
    """[(where, record)] with where = 'line N' for error messages."""
    if not path.is_file():
        raise DatasetError(path, None, "a LeRobot metadata file", "no such file")
    records = []
    source = path.relative_to(root)
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            raise DatasetError(source, f"line {number}", "one JSON object per line", str(e)) from e
        if not isinstance(record, dict):
            raise DatasetError(source, f"line {number}", "a JSON object", type(record).__name__)
        records.append((f"line {number}", record))
    return records


def _require(record: Mapping[str, Any], field: str, kind: type | tuple[type, ...], source: Any,
             where: str) -> Any:
    value = record.get(field)
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise DatasetError(source, f"{where}: {field}", f"a value of type {names}", repr(value))
    return value


def _load_tasks_v2(root: Path) -> dict[int, str]:
    path = root / "meta" / "tasks.jsonl"
    source = "meta/tasks.jsonl"
    return {_require(r, "task_index", int, source, where): _require(r, "task", str, source, where)
            for where, r in _read_jsonl(path, root)}


def _load_episodes_v2(root: Path, info: Mapping[str, Any], modality: ModalitySpec,
                      fps: float) -> list[EpisodeInfo]:
    source = "meta/episodes.jsonl"
    video_pattern = _video_path_pattern(info, modality)
    episodes = []
    for where, record in _read_jsonl(root / "meta" / "episodes.jsonl", root):
        index = _require(record, "episode_index", int, source, where)
        length = _require(record, "length", int, source, where)
        tasks = _require(record, "tasks", list, source, where)
        chunk = index // info["chunks_size"]
        data_path = root / info["data_path"].format(episode_chunk=chunk, episode_index=index)
        videos = {original: VideoSegment(root / video_pattern.format(episode_chunk=chunk, video_key=original,
                                                                     episode_index=index), 0.0)
                  for original in modality.video.values()}
        episodes.append(EpisodeInfo(index, length, [str(t) for t in tasks], data_path, videos))
    return sorted(episodes, key=lambda e: e.index)


def _parquet_columns(path: Path, root: Path, required: Sequence[str]) -> dict[str, list]:
    if not path.is_file():
        raise DatasetError(path, None, "a LeRobot metadata file", "no such file")
    table = read_parquet(path, root)
    for column in required:
        if column not in table.column_names:
            raise DatasetError(path.relative_to(root), column, "a column", "none")
    return table.to_pydict()


def _load_tasks_v3(root: Path) -> dict[int, str]:
    path = root / "meta" / "tasks.parquet"
    # LeRobot writes the task string as the pandas index; groot writes it as a column named "task"
    names = read_parquet(path, root).column_names if path.is_file() else []
    task_column = "task" if "task" in names else "__index_level_0__"
    columns = _parquet_columns(path, root, ("task_index", task_column))
    return {int(i): str(t) for i, t in zip(columns["task_index"], columns[task_column], strict=True)}


def _load_episodes_v3(root: Path, info: Mapping[str, Any], modality: ModalitySpec) -> list[EpisodeInfo]:
    files = sorted((root / "meta" / "episodes").glob("chunk-*/file-*.parquet"))
    video_columns = tuple(f"videos/{original}/{field}" for original in modality.video.values()
                          for field in ("chunk_index", "file_index", "from_timestamp"))
    if not files:
        raise DatasetError(root / "meta" / "episodes", None, "chunk-XXX/file-XXX.parquet episode files",
                           "none")
    video_pattern = _video_path_pattern(info, modality)
    episodes = []
    for path in files:
        columns = _parquet_columns(path, root, V3_EPISODE_COLUMNS + video_columns)
        for i in range(len(columns["episode_index"])):
            row = {name: values[i] for name, values in columns.items()}
            data_path = root / info["data_path"].format(chunk_index=row["data/chunk_index"],
                                                        file_index=row["data/file_index"])
            videos = {
                original: VideoSegment(
                    root / video_pattern.format(video_key=original,
                                                chunk_index=row[f"videos/{original}/chunk_index"],
                                                file_index=row[f"videos/{original}/file_index"]),
                    float(row[f"videos/{original}/from_timestamp"]))
                for original in modality.video.values()}
            episodes.append(EpisodeInfo(int(row["episode_index"]), int(row["length"]),
                                        [str(t) for t in row["tasks"]], data_path, videos))
    return sorted(episodes, key=lambda e: e.index)


@dataclasses.dataclass(frozen=True)
class ValidationSummary:
    episodes: int
    frames: int
    video_files: int
    decoded_frames: int


def validate_dataset(dataset: LeRobotDataset, decode: bool = True, count_packets: bool = True,
                     stats_file: bool = True) -> ValidationSummary:
    """Check the episode index against the data files and meta/info.json, every episode's parquet (the
    columns of meta/info.json, rows, widths, finite numbers, task indices, increasing timestamps) and
    every camera's video (readable, resolution, frames covering the episode: counted from its packets,
    or read from the container header when not `count_packets`); with `decode`, decode each episode's
    first and last frame; with `stats_file`, a present meta/stats.json must be valid.
    Raises DatasetError at the first problem."""
    from tqdm import tqdm

    from groot.data.stats import check_stats_file

    _check_every_data_row_listed(dataset)
    if stats_file:
        check_stats_file(dataset)
    columns = [name for name, feature in dataset.info["features"].items() if feature.get("dtype") != "video"]
    probes: dict[Path, video.VideoProbe] = {}
    decoded = 0
    for episode in tqdm(dataset.episodes, desc="validate", unit="episode", leave=False):
        data = dataset.episode_data(episode.index)
        source = str(episode.data_path.relative_to(dataset.root))
        for column in [*columns, "timestamp"]:
            if column not in data:
                expected = "a column of frame times (seconds)" if column == "timestamp" else \
                    "a column (a feature of meta/info.json)"
                raise DatasetError(source, column, expected, "none")
        times = data["timestamp"]
        if len(times) == 0:
            raise DatasetError(source, "timestamp", f"at least one row for episode {episode.index}", "none")
        steps = np.diff(times)
        if (steps <= 0).any():
            row = int(np.argmax(steps <= 0)) + 1
            raise DatasetError(source, "timestamp", f"increasing times in episode {episode.index}",
                               f"{times[row]} after {times[row - 1]} at row {row}")
        for task in episode.tasks:
            if task not in dataset.tasks.values():
                raise DatasetError("meta/tasks", f"episode {episode.index}", f"task {task!r} listed", "none")
        for key, original in dataset.modality.video.items():
            segment = episode.videos[original]
            if segment.path not in probes:
                probes[segment.path] = video.probe_video(segment.path, count_packets)
            _check_video_covers(dataset, key, episode, segment, probes[segment.path], float(times[-1]))
            if decode:
                decoded += len(dataset.decode_frames(episode.index, key, [times[0], times[-1]]))
    return ValidationSummary(len(dataset.episodes), dataset.num_frames, len(probes), decoded)


def _check_every_data_row_listed(dataset: LeRobotDataset) -> None:
    """Every episode with rows in a parquet file under data/ has an entry in the episode index, and
    `total_episodes` of meta/info.json (when given) counts the listed ones."""
    index_file = "meta/episodes/" if dataset.version == "v3.0" else "meta/episodes.jsonl"
    listed = {episode.index for episode in dataset.episodes}
    for path in sorted((dataset.root / "data").rglob("*.parquet")):
        table = read_parquet(path, dataset.root, columns=["episode_index"])
        source = str(path.relative_to(dataset.root))
        found = np.unique(table.column("episode_index").to_numpy(zero_copy_only=False))
        unlisted = sorted(set(found.tolist()) - listed)
        if unlisted:
            raise DatasetError(index_file, None, "an entry for every episode with rows under data/",
                               f"none for episode {unlisted[0]} (rows in {source})")
    total = dataset.info.get("total_episodes")
    if isinstance(total, int) and not isinstance(total, bool) and total != len(listed):
        raise DatasetError("meta/info.json", "total_episodes",
                           f"{len(listed)} (the episodes in {index_file})", total)


def _check_video_covers(dataset: LeRobotDataset, key: str, episode: EpisodeInfo, segment: VideoSegment,
                        probe: video.VideoProbe, last_time: float) -> None:
    height, width = dataset.video_resolution(key)
    padded = (height + height % 2, width + width % 2)  # our encoder pads odd sizes for yuv420p
    if (probe.height, probe.width) not in ((height, width), padded):
        raise DatasetError(segment.path, None, f"frames of {height}x{width} (meta/info.json)",
                           f"{probe.height}x{probe.width}")
    needed = segment.from_s + last_time
    if needed > probe.end_s - 1.0 / probe.fps + 1.0 / dataset.fps:
        raise DatasetError(segment.path, None,
                           f"frames up to {needed:.3f} s (episode {episode.index}, camera {key!r})",
                           f"{probe.num_frames} frames ending at {probe.end_s:.3f} s")
