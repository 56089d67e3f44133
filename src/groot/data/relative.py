"""Statistics of state-relative actions, per horizon step (N1.6 spec 4.5).

For an action key made relative to the state key of the same name, every window start t of every
episode gives action[t + k] - state[t + r] for k in the action indices and r the last observation index
(the reference the transform subtracts: the last observed state). Rows past the episode's end (or
before its start) are taken as the dataset's sampling takes them (`dataset.padded_rows`: the edge row
for absolute keys, zeros for relative ones). Statistics run over windows along axis 0, so each is
[T, D]: the spread of a step-k offset grows with k, and each horizon step is normalized by its own.

The result is cached in `meta/relative_action_stats.json` beside `meta/stats.json`, one entry per
(action key, state key, action indices, reference index, frame count), written atomically.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from groot.data.stats import STAT_NAMES, compute_stats
from groot.utils.files import atomic_write_json

CACHE_FILE = "relative_action_stats.json"
RelativeStats = dict[str, list[list[float]]]  # {stat: [T][D]}


def relative_windows(action: np.ndarray, state: np.ndarray, action_indices: Sequence[int],
                     reference_index: int, action_absolute: bool = True,
                     state_absolute: bool = True) -> np.ndarray:
    """One episode's action [L, D] and state [L, D] -> float32 [L, T, D]: window t, step k holds
    action[t + action_indices[k]] - state[t + reference_index]."""
    from groot.data.dataset import padded_rows

    starts = np.arange(len(action))
    steps = starts[:, None] + np.asarray(action_indices, np.int64)[None, :]  # [L, T]
    actions = padded_rows(action, steps.reshape(-1), action_absolute).reshape(*steps.shape, -1)
    reference = padded_rows(state, starts + reference_index, state_absolute)  # [L, D]
    return actions - reference[:, None, :]


def relative_stats(windows: np.ndarray) -> RelativeStats:
    """Windows [N, T, D] -> {mean, std, min, max, q01, q99: [T][D]} over axis 0 (float64 math)."""
    n, steps, dim = windows.shape
    flat = compute_stats({"windows": windows.reshape(n, steps * dim)})["windows"]
    return {stat: np.asarray(flat[stat]).reshape(steps, dim).tolist() for stat in STAT_NAMES}


def cache_key(action_key: str, state_key: str, action_indices: Sequence[int], reference_index: int,
              num_frames: int) -> str:
    indices = ",".join(str(int(i)) for i in action_indices)
    return f"{action_key}-{state_key}|actions={indices}|reference={reference_index}|frames={num_frames}"


def load_or_compute_relative_stats(dataset: Any, action_keys: Sequence[str], action_indices: Sequence[int],
                                   reference_index: int, write: bool = True) -> dict[str, RelativeStats]:
    """{action key name: {stat: [T][D]}} of a LeRobotDataset for full `action.<k>` keys, each relative to
    `state.<k>`; read from the cache file when it has an entry of the right shape, else computed over all
    episodes (and, when `write`, added to the cache)."""
    path = Path(dataset.root) / "meta" / CACHE_FILE
    cache = _read_cache(path)
    out: dict[str, RelativeStats] = {}
    missing: dict[str, str] = {}
    for action_key in action_keys:
        name = action_key.partition(".")[2]
        entry = cache.get(cache_key(action_key, f"state.{name}", action_indices, reference_index,
                                    dataset.num_frames))
        if _fits(entry, len(action_indices), dataset.modality.action[name].dim):
            out[name] = entry
        else:
            missing[name] = action_key
    if not missing:
        return out
    windows: dict[str, list[np.ndarray]] = {name: [] for name in missing}
    for episode in dataset.episodes:
        data = dataset.episode_data(episode.index)
        for name in missing:
            action_spec, state_spec = dataset.modality.action[name], dataset.modality.state[name]
            windows[name].append(relative_windows(
                data[action_spec.original_key][:, action_spec.start:action_spec.end],
                data[state_spec.original_key][:, state_spec.start:state_spec.end],
                action_indices, reference_index, action_spec.absolute, state_spec.absolute))
    for name, action_key in missing.items():
        out[name] = relative_stats(np.concatenate(windows[name]))
        cache[cache_key(action_key, f"state.{name}", action_indices, reference_index,
                        dataset.num_frames)] = out[name]
    if write:
        atomic_write_json(path, cache)
    return out


def _read_cache(path: Path) -> dict[str, Any]:
    """The cache file's entries; an absent, unreadable or malformed file counts as empty."""
    try:
        cache = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return {}
    return cache if isinstance(cache, dict) else {}


def _fits(entry: Any, steps: int, dim: int) -> bool:
    if not isinstance(entry, Mapping):
        return False
    for stat in STAT_NAMES:
        values = np.asarray(entry.get(stat, []), dtype=object)
        if values.shape != (steps, dim):
            return False
        try:
            if not np.isfinite(values.astype(np.float64)).all():
                return False
        except (TypeError, ValueError):
            return False
    return True
