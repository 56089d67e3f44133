"""Write GR00T-flavoured LeRobot datasets (v2.1 or v3.0) from in-memory episodes.

The dataset is built in a hidden sibling directory and renamed into place at the end, so a crash never
leaves a half-written dataset that looks valid.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from groot.data.lerobot import column_to_numpy
from groot.data.modality import ModalitySpec
from groot.data.stats import compute_stats
from groot.data.video import VideoEncoder
from groot.errors import OutputExistsError
from groot.utils.files import atomic_dir

TASK_COLUMN = "annotation.human.action.task_description"
CHUNKS_SIZE = 1000
V2_DATA_PATH = "data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet"
V2_VIDEO_PATH = "videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4"
V3_DATA_PATH = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
V3_VIDEO_PATH = "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
V3_EPISODES_PATH = "meta/episodes/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"


@dataclasses.dataclass
class Episode:
    """One recorded episode; keys are modality keys (no `state.` / `video.` prefix)."""

    task: str
    state: dict[str, np.ndarray]  # {key: [T, D]}
    action: dict[str, np.ndarray]  # {key: [T, D]}
    video: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)  # {key: uint8 [T, H, W, 3]}

    @property
    def length(self) -> int:
        return len(next(iter(self.state.values())))


def write_dataset(root: str | Path, episodes: Sequence[Episode], modality: ModalitySpec, fps: float,
                  version: Literal["v2.1", "v3.0"] = "v2.1", robot_type: str = "unknown",
                  episodes_per_file: int = 100, crf: int = 23) -> Path:
    """Write `episodes` as a LeRobot dataset at `root` (which must not exist yet); returns `root`.

    v3.0 puts `episodes_per_file` episodes into each data / video file."""
    root = Path(root)
    if version not in ("v2.1", "v3.0"):
        raise ValueError(f"version must be 'v2.1' or 'v3.0', got {version!r}")
    if root.exists():
        raise OutputExistsError(f"{root} already exists; choose a new path or remove it first")
    if not episodes:
        raise ValueError("write_dataset needs at least one episode")
    for number, episode in enumerate(episodes):
        _check_episode(episode, number, modality)
    _check_same_frame_sizes(episodes)
    with atomic_dir(root, tag="partial") as staging:
        _DatasetBuilder(staging, episodes, modality, fps, version, robot_type, episodes_per_file, crf).build()
    return root


def _check_episode(episode: Episode, number: int, modality: ModalitySpec) -> None:
    where = f"episode {number}"
    for group, arrays in (("state", episode.state), ("action", episode.action)):
        specs = modality.arrays(group)
        if set(arrays) != set(specs):
            raise ValueError(f"{where}: {group} keys {sorted(arrays)} differ from modality.json "
                             f"{sorted(specs)}")
        for key, values in arrays.items():
            if np.ndim(values) != 2 or np.shape(values)[1] != specs[key].dim:
                raise ValueError(f"{where}: {group}.{key} must be [T, {specs[key].dim}], "
                                 f"got {list(np.shape(values))}")
    if set(episode.video) != set(modality.video):
        raise ValueError(f"{where}: cameras {sorted(episode.video)} differ from modality.json "
                         f"{sorted(modality.video)}")
    for key, frames in episode.video.items():
        if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
            raise ValueError(f"{where}: video.{key} must be uint8 [T, H, W, 3], got {frames.dtype} "
                             f"{list(frames.shape)}")
    lengths = {f"{group}.{key}": len(values) for group, arrays in
               (("state", episode.state), ("action", episode.action), ("video", episode.video))
               for key, values in arrays.items()}
    if len(set(lengths.values())) != 1 or 0 in lengths.values():
        raise ValueError(f"{where}: all arrays need the same number of steps T > 0, got {lengths}")


def _check_same_frame_sizes(episodes: Sequence[Episode]) -> None:
    for key, frames in episodes[0].video.items():
        for number, episode in enumerate(episodes):
            if episode.video[key].shape[1:] != frames.shape[1:]:
                raise ValueError(f"episode {number}: video.{key} frames are {episode.video[key].shape[1:3]}, "
                                 f"episode 0 has {frames.shape[1:3]}; one camera has one resolution")


def _vector_column(arrays: dict[str, np.ndarray], modality: ModalitySpec, group: str,
                   original_key: str) -> np.ndarray:
    """Concatenate the keys that live in `original_key` at their [start:end) slices. [T, D] float32"""
    specs = {k: s for k, s in modality.arrays(group).items() if s.original_key == original_key}
    length = len(next(iter(arrays.values())))
    out = np.zeros((length, max(s.end for s in specs.values())), dtype=np.float32)
    for key, spec in specs.items():
        out[:, spec.start:spec.end] = arrays[key]
    return out


def _vector_array(values: np.ndarray) -> pa.Array:
    """float32 [T, D] -> fixed-size-list column (what LeRobot writes for vector features)."""
    return pa.FixedSizeListArray.from_arrays(pa.array(values.reshape(-1), pa.float32()), values.shape[1])


class _DatasetBuilder:
    """Writes every file of one dataset into an (empty) staging directory."""

    def __init__(self, root: Path, episodes: Sequence[Episode], modality: ModalitySpec, fps: float,
                 version: str, robot_type: str, episodes_per_file: int, crf: int):
        self.root, self.episodes, self.modality, self.fps = root, episodes, modality, fps
        self.version, self.robot_type, self.crf = version, robot_type, crf
        self.episodes_per_file = episodes_per_file
        self.task_index = {task: i for i, task in enumerate(dict.fromkeys(e.task for e in episodes))}
        # the parquet vector columns of each group, e.g. {"state": ["observation.state"], ...}
        self.vector_keys = {
            group: list(dict.fromkeys(s.original_key for s in modality.arrays(group).values()))
            for group in ("state", "action")}

    def build(self) -> None:
        tables = self._episode_tables()
        if self.version == "v2.1":
            self._write_v2(tables)
        else:
            self._write_v3(tables)
        meta = self.root / "meta"
        self._write_json(meta / "info.json", self._info(sum(t.num_rows for t in tables)))
        self._write_json(meta / "modality.json", self.modality.to_dict())
        self._write_json(meta / "stats.json", compute_stats(self._numeric_columns(tables)))

    def _episode_tables(self) -> list[pa.Table]:
        tables, offset = [], 0
        for number, episode in enumerate(self.episodes):
            length = episode.length
            columns: dict[str, pa.Array] = {}
            for group, arrays in (("state", episode.state), ("action", episode.action)):
                for original_key in self.vector_keys[group]:
                    columns[original_key] = _vector_array(_vector_column(arrays, self.modality, group,
                                                                         original_key))
            task = np.full(length, self.task_index[episode.task], dtype=np.int64)
            columns["timestamp"] = pa.array(np.arange(length, dtype=np.float32) / np.float32(self.fps))
            columns["frame_index"] = pa.array(np.arange(length, dtype=np.int64))
            columns["episode_index"] = pa.array(np.full(length, number, dtype=np.int64))
            columns["index"] = pa.array(np.arange(offset, offset + length, dtype=np.int64))
            columns["task_index"] = pa.array(task)
            for column in self._annotation_columns():
                columns[column] = pa.array(task)
            columns["next.done"] = pa.array(np.arange(length) == length - 1)
            tables.append(pa.table(columns))
            offset += length
        return tables

    def _annotation_columns(self) -> list[str]:
        """Task-description columns: the modality's annotation columns, always including the default one."""
        columns = dict.fromkeys([TASK_COLUMN, *self.modality.annotation.values()])
        return [c for c in columns if c != "task_index"]

    def _write_v2(self, tables: list[pa.Table]) -> None:
        for number, (episode, table) in enumerate(zip(self.episodes, tables, strict=True)):
            chunk = number // CHUNKS_SIZE
            path = self.root / V2_DATA_PATH.format(episode_chunk=chunk, episode_index=number)
            path.parent.mkdir(parents=True, exist_ok=True)
            pq.write_table(table, path)
            for key, frames in episode.video.items():
                video_path = V2_VIDEO_PATH.format(episode_chunk=chunk, video_key=self.modality.video[key],
                                                  episode_index=number)
                with VideoEncoder(self.root / video_path, self.fps, crf=self.crf) as encoder:
                    encoder.append(frames)
        meta = self.root / "meta"
        self._write_jsonl(meta / "tasks.jsonl",
                          [{"task_index": i, "task": t} for t, i in self.task_index.items()])
        self._write_jsonl(meta / "episodes.jsonl", [
            {"episode_index": n, "tasks": [e.task], "length": e.length} for n, e in enumerate(self.episodes)])
        self._write_jsonl(meta / "episodes_stats.jsonl", [
            {"episode_index": n, "stats": self._episode_stats(t)} for n, t in enumerate(tables)])

    def _write_v3(self, tables: list[pa.Table]) -> None:
        rows: list[dict[str, Any]] = []
        for file_number, first in enumerate(range(0, len(self.episodes), self.episodes_per_file)):
            numbers = range(first, min(first + self.episodes_per_file, len(self.episodes)))
            where = {"chunk_index": file_number // CHUNKS_SIZE, "file_index": file_number % CHUNKS_SIZE}
            path = self.root / V3_DATA_PATH.format(**where)
            path.parent.mkdir(parents=True, exist_ok=True)
            pq.write_table(pa.concat_tables([tables[n] for n in numbers]), path)
            spans = {key: self._write_video_file(key, numbers, where) for key in self.modality.video}
            for i, number in enumerate(numbers):
                first_index = tables[number].column("index")[0].as_py()
                row = {"episode_index": number, "tasks": [self.episodes[number].task],
                       "length": self.episodes[number].length,
                       "data/chunk_index": where["chunk_index"], "data/file_index": where["file_index"],
                       "dataset_from_index": first_index,
                       "dataset_to_index": first_index + self.episodes[number].length}
                for key, original in self.modality.video.items():
                    row[f"videos/{original}/chunk_index"] = where["chunk_index"]
                    row[f"videos/{original}/file_index"] = where["file_index"]
                    row[f"videos/{original}/from_timestamp"], row[f"videos/{original}/to_timestamp"] = \
                        spans[key][i]
                rows.append(row)
        meta = self.root / "meta"
        episodes_path = self.root / V3_EPISODES_PATH.format(chunk_index=0, file_index=0)
        episodes_path.parent.mkdir(parents=True)
        pq.write_table(pa.Table.from_pylist(rows), episodes_path)
        pq.write_table(pa.table({"task_index": pa.array(list(self.task_index.values()), pa.int64()),
                                 "task": pa.array(list(self.task_index), pa.string())}),
                       meta / "tasks.parquet")

    def _write_video_file(self, key: str, numbers: range, where: dict[str, int]) -> list[tuple[float, float]]:
        """Episodes `numbers` of camera `key` back to back in one file -> their (from, to) timestamps."""
        path = self.root / V3_VIDEO_PATH.format(video_key=self.modality.video[key], **where)
        with VideoEncoder(path, self.fps, crf=self.crf) as encoder:
            return [encoder.append(self.episodes[n].video[key]) for n in numbers]

    def _info(self, total_frames: int) -> dict[str, Any]:
        v3 = self.version == "v3.0"
        info: dict[str, Any] = {
            "codebase_version": self.version,
            "robot_type": self.robot_type,
            "total_episodes": len(self.episodes),
            "total_frames": total_frames,
            "total_tasks": len(self.task_index),
            "chunks_size": CHUNKS_SIZE,
            "fps": self.fps,
            "splits": {"train": f"0:{len(self.episodes)}"},
            "data_path": V3_DATA_PATH if v3 else V2_DATA_PATH,
            "video_path": (V3_VIDEO_PATH if v3 else V2_VIDEO_PATH) if self.modality.video else None,
            "features": self._features(),
        }
        if v3:
            info["data_files_size_in_mb"], info["video_files_size_in_mb"] = 100, 500
        else:
            info["total_chunks"] = -(-len(self.episodes) // CHUNKS_SIZE)
            info["total_videos"] = len(self.episodes) * len(self.modality.video)
        return info

    def _features(self) -> dict[str, Any]:
        features: dict[str, Any] = {}
        for key, original in self.modality.video.items():
            height, width = self.episodes[0].video[key].shape[1:3]
            features[original] = {
                "dtype": "video", "shape": [height, width, 3], "names": ["height", "width", "channels"],
                "info": {"video.height": height, "video.width": width, "video.codec": "h264",
                         "video.pix_fmt": "yuv420p", "video.is_depth_map": False, "video.fps": self.fps,
                         "video.channels": 3, "has_audio": False}}
        for group in ("state", "action"):
            for original_key in self.vector_keys[group]:
                specs = [(k, s) for k, s in self.modality.arrays(group).items()
                         if s.original_key == original_key]
                width = max(s.end for _, s in specs)
                names = [f"dim_{i}" for i in range(width)]
                for key, spec in specs:
                    names[spec.start:spec.end] = [f"{key}_{i}" for i in range(spec.dim)]
                features[original_key] = {"dtype": "float32", "shape": [width], "names": names}
        scalars = {"timestamp": "float32", "frame_index": "int64", "episode_index": "int64", "index": "int64",
                   "task_index": "int64", "next.done": "bool"}
        scalars.update({column: "int64" for column in self._annotation_columns()})
        features.update({name: {"dtype": dtype, "shape": [1], "names": None}
                         for name, dtype in scalars.items()})
        return features

    @staticmethod
    def _numeric_columns(tables: list[pa.Table]) -> dict[str, np.ndarray]:
        table = pa.concat_tables(tables)
        return {name: column_to_numpy(table.column(name), "<in memory>", name) for name in table.column_names}

    def _episode_stats(self, table: pa.Table) -> dict[str, Any]:
        stats = compute_stats(self._numeric_columns([table]))
        for entry in stats.values():
            entry["count"] = [table.num_rows]
        return stats

    @staticmethod
    def _write_json(path: Path, data: Any) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(data, indent=2))

    @staticmethod
    def _write_jsonl(path: Path, records: list[dict[str, Any]]) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(json.dumps(r) + "\n" for r in records))
