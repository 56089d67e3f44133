"""`DatasetMetadata` (spec 7.4): what the transforms need to know about a dataset, and what a checkpoint
carries in `experiment_cfg/metadata.json` as `{embodiment_tag: DatasetMetadata.to_dict()}`.

    statistics: {"state" | "action": {key: {mean, std, min, max, q01, q99: [D]}},
                 "relative_action": {key: {mean, std, min, max, q01, q99: [T][D]}}}  (optional)
    modalities: {"video": {key: {resolution: [W, H], channels, fps}},
                 "state" | "action": {key: {absolute, rotation_type, shape: [D], continuous}}}
    embodiment_tag: str

Keys are modality keys without the `state.` / `action.` / `video.` prefix. `relative_action` holds, for
the action keys a data config turns state-relative (N1.6 spec 4.5), the statistics of action - reference
state per horizon step (`groot.data.relative`); such a key is normalized with them elementwise.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from groot.errors import DatasetError

STAT_NAMES = ("mean", "std", "min", "max", "q01", "q99")
ARRAY_GROUPS = ("state", "action")
RELATIVE_ACTION = "relative_action"
PERCENTILE_MIXING = ("weighted_average", "min_max")


@dataclasses.dataclass
class DatasetMetadata:
    statistics: dict[str, dict[str, dict[str, list[float]]]]
    modalities: dict[str, dict[str, dict[str, Any]]]
    embodiment_tag: str

    # ---- construction ----------------------------------------------------------------------------
    @classmethod
    def from_dataset(cls, dataset: Any, stats: Mapping[str, Mapping[str, Sequence[float]]],
                     embodiment_tag: str) -> DatasetMetadata:
        """From a `LeRobotDataset` and its column stats (`{column: {stat: [D]}}`, e.g. meta/stats.json):
        each key's stats are the `[start:end)` slice of its column's stats."""
        statistics: dict[str, dict[str, dict[str, list[float]]]] = {}
        modalities: dict[str, dict[str, dict[str, Any]]] = {"video": {}}
        for group in ARRAY_GROUPS:
            statistics[group], modalities[group] = {}, {}
            for key, spec in dataset.modality.arrays(group).items():
                column_stats = stats.get(spec.original_key)
                if not isinstance(column_stats, Mapping):
                    raise DatasetError("meta/stats.json", spec.original_key,
                                       f"statistics of the column behind {group}.{key}", "none")
                statistics[group][key] = {
                    stat: _stat_slice(column_stats, stat, spec.original_key, spec.start, spec.end)
                    for stat in STAT_NAMES}
                modalities[group][key] = {"absolute": spec.absolute, "rotation_type": spec.rotation_type,
                                          "shape": [spec.dim], "continuous": bool(spec.continuous)}
        for key in dataset.modality.video:
            height, width = dataset.video_resolution(key)
            modalities["video"][key] = {"resolution": [width, height], "channels": 3, "fps": dataset.fps}
        return cls(statistics=statistics, modalities=modalities, embodiment_tag=embodiment_tag)

    # ---- (de)serialisation -----------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {"statistics": _copy(self.statistics), "modalities": _copy(self.modalities),
                "embodiment_tag": self.embodiment_tag}

    @classmethod
    def from_dict(cls, data: Any, source: str = "experiment_cfg/metadata.json") -> DatasetMetadata:
        if not isinstance(data, Mapping):
            raise DatasetError(source, None, "a DatasetMetadata object", type(data).__name__)
        for name, kind in (("statistics", Mapping), ("modalities", Mapping), ("embodiment_tag", str)):
            if not isinstance(data.get(name), kind):
                raise DatasetError(source, name, f"a {'string' if kind is str else 'JSON object'}",
                                   repr(data.get(name)))
        statistics, modalities = data["statistics"], data["modalities"]
        for group in ARRAY_GROUPS:
            for key, info in modalities.get(group, {}).items():
                where = f"modalities.{group}.{key}"
                shape = info.get("shape") if isinstance(info, Mapping) else None
                if not (isinstance(shape, list) and len(shape) == 1 and isinstance(shape[0], int)):
                    raise DatasetError(source, f"{where}.shape", "a one-element list [D]", repr(shape))
                key_stats = statistics.get(group, {}).get(key)
                if not isinstance(key_stats, Mapping):
                    raise DatasetError(source, f"statistics.{group}.{key}", "an object of stats", "none")
                for stat in STAT_NAMES:
                    values = key_stats.get(stat)
                    if not (isinstance(values, list) and len(values) == shape[0]):
                        raise DatasetError(source, f"statistics.{group}.{key}.{stat}",
                                           f"a list of {shape[0]} numbers", repr(values))
        _check_relative_stats(statistics.get(RELATIVE_ACTION, {}), modalities.get("action", {}), source)
        return cls(statistics=_copy(statistics), modalities=_copy(modalities),
                   embodiment_tag=data["embodiment_tag"])

    # ---- queries ---------------------------------------------------------------------------------
    def array_info(self, group: str, key: str) -> dict[str, Any]:
        """{absolute, rotation_type, shape, continuous} of `state` / `action` key `key`."""
        infos = self.modalities.get(group, {})
        if key not in infos:
            raise DatasetError(f"metadata of {self.embodiment_tag!r}", f"modalities.{group}.{key}",
                               f"one of {sorted(infos)}", "no such key")
        return infos[key]

    def dim(self, group: str, key: str) -> int:
        return int(self.array_info(group, key)["shape"][0])

    def key_stats(self, group: str, key: str) -> dict[str, np.ndarray]:
        """{stat: float32 [D]} of one state / action key; group `relative_action`: {stat: float32 [T, D]}
        of the action key made state-relative."""
        self.array_info("action" if group == RELATIVE_ACTION else group, key)
        stats = self.statistics.get(group, {}).get(key)
        if stats is None:
            raise DatasetError(f"metadata of {self.embodiment_tag!r}", f"statistics.{group}.{key}",
                               "per-step statistics of the relative action (computed for a data config "
                               "listing the key in relative_action_keys)", "none")
        return {stat: np.asarray(values, dtype=np.float32) for stat, values in stats.items()}


def merge_metadata(metadatas: Sequence[DatasetMetadata], weights: Sequence[float],
                   percentile_mixing: str = "weighted_average") -> DatasetMetadata:
    """Merge datasets of one embodiment (spec 6.4), weights normalized to sum 1:
    mean = sum w_i mu_i; std = sqrt(sum w_i (sigma_i^2 + mu_i^2) - mean^2); min / max elementwise;
    q01 / q99 weighted average (`weighted_average`) or elementwise min / max (`min_max`)."""
    if percentile_mixing not in PERCENTILE_MIXING:
        raise ValueError(f"percentile_mixing {percentile_mixing!r} is not one of {PERCENTILE_MIXING}")
    if not metadatas or len(metadatas) != len(weights):
        raise ValueError(f"need one weight per metadata, found {len(metadatas)} metadata and "
                         f"{len(weights)} weights")
    first = metadatas[0]
    groups = [*ARRAY_GROUPS, *([RELATIVE_ACTION] if RELATIVE_ACTION in first.statistics else [])]
    for other in metadatas[1:]:
        for group in ARRAY_GROUPS:
            if other.modalities.get(group) != first.modalities.get(group):
                raise ValueError(f"cannot merge {group} modalities of embodiment {first.embodiment_tag!r}: "
                                 f"{first.modalities.get(group)} != {other.modalities.get(group)}")
        ours, theirs = (sorted(m.statistics.get(RELATIVE_ACTION, {})) for m in (first, other))
        if ours != theirs:
            raise ValueError(f"cannot merge relative action statistics of embodiment "
                             f"{first.embodiment_tag!r}: keys {ours} != {theirs}")
    w_flat = np.asarray(weights, dtype=np.float64)
    w_flat = w_flat / w_flat.sum()  # [N]
    statistics: dict[str, dict[str, dict[str, list[float]]]] = {}
    for group in groups:
        statistics[group] = {}
        for key in first.statistics.get(group, {}):
            stacked = {stat: np.asarray([m.statistics[group][key][stat] for m in metadatas], np.float64)
                       for stat in STAT_NAMES}  # {stat: [N, D]} ([N, T, D] for relative actions)
            w = w_flat.reshape(-1, *[1] * (stacked["mean"].ndim - 1))
            mean = (w * stacked["mean"]).sum(0)
            second_moment = (w * (stacked["std"] ** 2 + stacked["mean"] ** 2)).sum(0)
            merged = {"mean": mean, "std": np.sqrt(np.maximum(second_moment - mean**2, 0.0)),
                      "min": stacked["min"].min(0), "max": stacked["max"].max(0)}
            if percentile_mixing == "weighted_average":
                merged["q01"], merged["q99"] = (w * stacked["q01"]).sum(0), (w * stacked["q99"]).sum(0)
            else:
                merged["q01"], merged["q99"] = stacked["q01"].min(0), stacked["q99"].max(0)
            statistics[group][key] = {stat: merged[stat].tolist() for stat in STAT_NAMES}
    return DatasetMetadata(statistics=statistics, modalities=_copy(first.modalities),
                           embodiment_tag=first.embodiment_tag)


def _check_relative_stats(relative: Any, action_infos: Mapping[str, Any], source: str) -> None:
    """Each `statistics.relative_action.<key>` names an action key and holds six [T][D] lists, one T."""
    if not isinstance(relative, Mapping):
        raise DatasetError(source, f"statistics.{RELATIVE_ACTION}", "a JSON object", type(relative).__name__)
    for key, key_stats in relative.items():
        where = f"statistics.{RELATIVE_ACTION}.{key}"
        if key not in action_infos:
            raise DatasetError(source, where, f"an action key among {sorted(action_infos)}", "no such key")
        if not isinstance(key_stats, Mapping):
            raise DatasetError(source, where, "an object of stats", repr(key_stats))
        dim = action_infos[key]["shape"][0]
        steps = None
        for stat in STAT_NAMES:
            values = key_stats.get(stat)
            rows_ok = (isinstance(values, list) and len(values) > 0
                       and all(isinstance(row, list) and len(row) == dim for row in values))
            if not rows_ok or (steps is not None and len(values) != steps):
                expected = f"{steps or 'T'} lists of {dim} numbers (one per horizon step)"
                raise DatasetError(source, f"{where}.{stat}", expected, repr(values))
            steps = len(values)


def _stat_slice(column_stats: Mapping[str, Sequence[float]], stat: str, column: str, start: int,
                end: int) -> list[float]:
    values = column_stats.get(stat)
    if not isinstance(values, Sequence) or len(values) < end:
        found = f"{len(values)} values" if isinstance(values, Sequence) else repr(values)
        raise DatasetError("meta/stats.json", f"{column}.{stat}", f"at least {end} values", found)
    return [float(v) for v in values[start:end]]


def _copy(tree: Any) -> Any:
    """Deep copy of a JSON tree (dicts, lists, scalars) as plain dicts and lists."""
    if isinstance(tree, Mapping):
        return {k: _copy(v) for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        return [_copy(v) for v in tree]
    return tree
