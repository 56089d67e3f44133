"""Training samples from LeRobot datasets (spec 6.3, 6.4).

`GrootDataset` maps every (trajectory, base index) of one dataset to a raw step dict and, unless
`transform=False`, through its data config's transform chain to a model sample. `MixtureDataset` draws
from several datasets with per-dataset and per-trajectory weights, deterministically per
(epoch, index, seed), and merges the statistics of datasets that share an embodiment tag.
Both hold only paths, arrays and the reader (which opens files per call), so they can be handed to forked
or spawned DataLoader workers.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch.utils.data

from groot.data.configs import DataConfig
from groot.data.lerobot import LeRobotDataset
from groot.data.metadata import RELATIVE_ACTION, DatasetMetadata, merge_metadata
from groot.data.relative import load_or_compute_relative_stats
from groot.data.stats import load_or_compute_stats
from groot.data.transforms import split_key
from groot.errors import DatasetError
from groot.utils.seeding import hashed_seed


def padded_rows(values: np.ndarray, indices: np.ndarray, absolute: bool) -> np.ndarray:
    """Rows `indices` of values [L, D] -> float32 [T, D]; out-of-range rows repeat the first / last row
    for absolute keys and are zeros for relative ones."""
    rows = values[np.clip(indices, 0, len(values) - 1)].astype(np.float32)
    if not absolute:
        rows[(indices < 0) | (indices >= len(values))] = 0.0
    return rows


class GrootDataset(torch.utils.data.Dataset):
    """One LeRobot dataset sampled at every (trajectory, base index). Items are model samples (the data
    config's transform in training mode) or raw step dicts when `transform=False`. With a
    `frame_cache_dir`, videos are decoded once into it (`groot.data.frame_cache`). A config with
    `relative_action_keys` adds their per-step statistics to the metadata (`groot.data.relative`)."""

    def __init__(self, path: str | Path, data_config: DataConfig, embodiment_tag: str,
                 video_backend: str = "pyav", transform: bool = True,
                 frame_cache_dir: str | Path | None = None):
        if transform:
            data_config.projector_index(embodiment_tag)  # a tag the model cannot take fails here
        self.path = Path(path)
        self.data_config = data_config
        self.embodiment_tag = embodiment_tag
        self.reader = LeRobotDataset(self.path, video_backend=video_backend, frame_cache_dir=frame_cache_dir)
        self.modality_config = data_config.modality_config()
        self._check_keys()
        stats = load_or_compute_stats(self.reader)
        self.metadata = DatasetMetadata.from_dataset(self.reader, stats, embodiment_tag)
        if data_config.relative_action_keys:
            self.metadata.statistics[RELATIVE_ACTION] = load_or_compute_relative_stats(
                self.reader, data_config.relative_action_keys, data_config.action_indices,
                data_config.observation_indices[-1])
        self.transform = data_config.transform() if transform else None
        if self.transform is not None:
            self.transform.set_metadata(self.metadata)
            self.transform.train()
        self.trajectory_ids = np.array([episode.index for episode in self.reader.episodes], np.int64)
        self.trajectory_lengths = np.array([episode.length for episode in self.reader.episodes], np.int64)
        self._length_of = dict(zip(self.trajectory_ids.tolist(), self.trajectory_lengths.tolist(),
                                   strict=True))
        self._starts = np.concatenate([[0], np.cumsum(self.trajectory_lengths)])  # [N + 1]
        self._deltas = {group: np.asarray(config.delta_indices, np.int64)
                        for group, config in self.modality_config.items()}

    def __repr__(self) -> str:
        return (f"GrootDataset({str(self.path)!r}, config={self.data_config.name!r}, "
                f"tag={self.embodiment_tag!r}, trajectories={len(self.trajectory_ids)}, steps={len(self)})")

    def __len__(self) -> int:
        return int(self._starts[-1])

    def set_metadata(self, metadata: DatasetMetadata) -> None:
        """Use other statistics (e.g. merged over a mixture) from now on."""
        self.metadata = metadata
        if self.transform is not None:
            self.transform.set_metadata(metadata)

    def locate(self, index: int) -> tuple[int, int]:
        """Flat index -> (trajectory id, base index)."""
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} steps")
        position = int(np.searchsorted(self._starts, index, side="right")) - 1
        return int(self.trajectory_ids[position]), int(index - self._starts[position])

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.get_step(*self.locate(int(index)))

    def get_step(self, trajectory_id: int, base_index: int) -> dict[str, Any]:
        step = self.raw_step(trajectory_id, base_index)
        return step if self.transform is None else self.transform.apply(step)

    def raw_step(self, trajectory_id: int, base_index: int) -> dict[str, Any]:
        """`video.<k>` uint8 [T, H, W, 3], `state.<k>` / `action.<k>` float32 [T, D], language keys
        list[str], for the steps base_index + delta_indices of each modality."""
        if trajectory_id not in self._length_of:
            raise KeyError(f"{self.path}: no trajectory {trajectory_id}")
        length = self._length_of[trajectory_id]
        if not 0 <= base_index < length:
            raise IndexError(f"base index {base_index} outside trajectory {trajectory_id} of length {length}")
        data = self.reader.episode_data(trajectory_id)
        step: dict[str, Any] = {}
        video_steps = np.clip(base_index + self._deltas["video"], 0, length - 1)
        for key in self.modality_config["video"].modality_keys:
            timestamps = data["timestamp"][video_steps]
            step[key] = self.reader.decode_frames(trajectory_id, split_key(key)[1], timestamps)
        for group in ("state", "action"):
            steps = base_index + self._deltas[group]
            for key in self.modality_config[group].modality_keys:
                spec = self.reader.modality.arrays(group)[split_key(key)[1]]
                step[key] = padded_rows(data[spec.original_key][:, spec.start:spec.end], steps, spec.absolute)
        language_steps = np.clip(base_index + self._deltas["language"], 0, length - 1)
        for key in self.modality_config["language"].modality_keys:
            column = self._language_column(key, data)
            step[key] = [self.reader.tasks[int(i)] for i in data[column][language_steps]]
        return step

    def _language_column(self, key: str, data: dict[str, np.ndarray]) -> str:
        name = key.removeprefix("annotation.")
        column = self.reader.modality.annotation.get(name, key)
        if column not in data:
            raise DatasetError(f"{self.path.name}: episode parquet", column,
                               f"a task-index column for language key {key!r}",
                               f"columns {', '.join(sorted(data))}")
        return column

    def _check_keys(self) -> None:
        modality = self.reader.modality
        available = {"video": modality.video, "state": modality.state, "action": modality.action}
        for group, keys in available.items():
            for key in self.modality_config[group].modality_keys:
                if split_key(key)[1] not in keys:
                    raise DatasetError(self.path / "meta" / "modality.json", key,
                                       f"a {group} key of data config {self.data_config.name!r} "
                                       f"(the dataset has {', '.join(sorted(keys)) or 'none'})", "none")


def draw(cdf: np.ndarray, uniform: float) -> int:
    """Position drawn by `uniform` in [0, 1) from a cumulative distribution [N] (last value ~1)."""
    return min(int(np.searchsorted(cdf, uniform, side="right")), len(cdf) - 1)


class MixtureDataset(torch.utils.data.Dataset):
    """Weighted mixture of `GrootDataset`s (spec 6.4).

    Dataset weights = `weights` (x total steps if `balance_dataset_weights`), normalized; trajectory
    weights within a dataset are proportional to length if `balance_trajectory_weights`, else uniform.
    Item `index` draws a dataset, then a trajectory, then a base index uniformly, from an RNG seeded by
    sha256(epoch, index, seed) in training (by `index` in evaluation). An epoch has
    max(len_i / weight_i) items over the primary datasets (given weight exactly 1.0)."""

    def __init__(self, datasets: Sequence[GrootDataset], weights: Sequence[float] | None = None,
                 balance_dataset_weights: bool = True, balance_trajectory_weights: bool = True,
                 seed: int = 42, percentile_mixing: str = "weighted_average", training: bool = True):
        if not datasets:
            raise ValueError("MixtureDataset needs at least one dataset")
        given = np.asarray([1.0] * len(datasets) if weights is None else weights, np.float64)
        if given.shape != (len(datasets),) or (given < 0).any() or given.sum() <= 0:
            raise ValueError(f"need one non-negative weight per dataset ({len(datasets)}), "
                             f"found {given.tolist()}")
        self.datasets = list(datasets)
        self.seed, self.training, self.epoch = seed, training, 0
        sizes = np.asarray([len(d) for d in self.datasets], np.float64)
        raw = given * sizes if balance_dataset_weights else given
        self.dataset_weights = raw / raw.sum()
        self._dataset_cdf = np.cumsum(self.dataset_weights)
        self._trajectory_cdfs = []
        for dataset in self.datasets:
            lengths = dataset.trajectory_lengths.astype(np.float64)
            traj = lengths if balance_trajectory_weights else np.ones_like(lengths)
            self._trajectory_cdfs.append(np.cumsum(traj / traj.sum()))
        primary = given == 1.0
        if not primary.any():
            primary = given > 0
        self._length = int(np.max(sizes[primary] / self.dataset_weights[primary]))
        self.metadata = self._merged_metadata(percentile_mixing)
        for dataset in self.datasets:
            dataset.set_metadata(self.metadata[dataset.embodiment_tag])

    def _merged_metadata(self, percentile_mixing: str) -> dict[str, DatasetMetadata]:
        merged = {}
        for tag in dict.fromkeys(d.embodiment_tag for d in self.datasets):
            members = [i for i, d in enumerate(self.datasets) if d.embodiment_tag == tag]
            metadatas = [self.datasets[i].metadata for i in members]
            merged[tag] = metadatas[0] if len(members) == 1 else merge_metadata(
                metadatas, self.dataset_weights[members].tolist(), percentile_mixing)
        return merged

    def __len__(self) -> int:
        return self._length

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def sample_location(self, index: int) -> tuple[int, int, int]:
        """(dataset position, trajectory id, base index) of item `index` in the current epoch."""
        seed = hashed_seed(self.epoch, index, self.seed, sep="-") if self.training else index
        rng = np.random.default_rng(seed)
        which = draw(self._dataset_cdf, rng.random())
        dataset = self.datasets[which]
        position = draw(self._trajectory_cdfs[which], rng.random())
        base = int(rng.integers(0, dataset.trajectory_lengths[position]))
        return which, int(dataset.trajectory_ids[position]), base

    def __getitem__(self, index: int) -> dict[str, Any]:
        which, trajectory_id, base = self.sample_location(int(index))
        return self.datasets[which].get_step(trajectory_id, base)
