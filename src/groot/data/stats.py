"""Per-column statistics (`meta/stats.json`): mean, std, min, max, q01, q99 as lists, one value per dim.

Computed in float64 over every parquet row of the dataset (spec 6.2); per-key stats are later sliced
`[start:end)` from the column stats.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from groot.utils.files import atomic_write_json

STAT_NAMES = ("mean", "std", "min", "max", "q01", "q99")
Stats = dict[str, dict[str, list[float]]]  # {column: {stat: [D]}}


def compute_stats(columns: Mapping[str, np.ndarray]) -> Stats:
    """{column: values [N, D] or [N]} -> {column: {mean, std, min, max, q01, q99: list of D floats}}."""
    out: Stats = {}
    for name, values in columns.items():
        data = np.asarray(values, dtype=np.float64)
        data = data[:, None] if data.ndim == 1 else data
        if data.ndim != 2 or data.shape[0] == 0:
            raise ValueError(f"stats of column {name!r}: expected values [N, D] with N > 0, "
                             f"found shape {list(np.shape(values))}")
        q01, q99 = np.quantile(data, [0.01, 0.99], axis=0)
        stats = {"mean": data.mean(axis=0), "std": data.std(axis=0), "min": data.min(axis=0),
                 "max": data.max(axis=0), "q01": q01, "q99": q99}
        out[name] = {stat: stats[stat].tolist() for stat in STAT_NAMES}
    return out


def stats_fit(stats: Any, widths: Mapping[str, int]) -> bool:
    """Whether `stats` holds all six finite statistics with the right width for each column."""
    return stats_problem(stats, widths) is None


def stats_problem(stats: Any, widths: Mapping[str, int]) -> tuple[str | None, str, str] | None:
    """The first reason `stats` does not fit `widths` ({column: D}) as (key, expected, found), else None."""
    if not isinstance(stats, Mapping):
        return None, "a JSON object of column statistics", type(stats).__name__
    for column, width in widths.items():
        entry = stats.get(column)
        if not isinstance(entry, Mapping):
            return column, f"an object of {', '.join(STAT_NAMES)}", "none" if entry is None else repr(entry)
        for stat in STAT_NAMES:
            values = entry.get(stat)
            key = f"{column}.{stat}"
            if not (isinstance(values, list) and len(values) == width):
                found = f"{len(values)} values" if isinstance(values, list) else repr(values)
                return key, f"a list of {width} numbers", found
            for dim, value in enumerate(values):
                if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
                    return key, "finite numbers", f"{value!r} at dim {dim}"
    return None


def check_stats_file(dataset: Any) -> None:
    """A present `meta/stats.json` must be valid JSON holding finite stats of every state / action column
    at its width (a missing one is fine: it is computed when needed). Raises DatasetError."""
    from groot.errors import DatasetError

    path = Path(dataset.root) / "meta" / "stats.json"
    if not path.is_file():
        return
    try:
        stats = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DatasetError("meta/stats.json", None, "valid JSON", f"{type(e).__name__}: {e}") from e
    widths = {column: dataset.vector_widths[column] for column in dataset.modality.column_widths()}
    problem = stats_problem(stats, widths)
    if problem is not None:
        raise DatasetError("meta/stats.json", *problem)


def load_or_compute_stats(dataset: Any, refresh: bool = False, write: bool = True) -> Stats:
    """`meta/stats.json` of a LeRobotDataset; computed over all episodes (and written there when `write`)
    when it is missing, unreadable, lacks a state / action column or has the wrong widths (or when
    `refresh`)."""
    from tqdm import tqdm

    path = Path(dataset.root) / "meta" / "stats.json"
    widths = {column: dataset.vector_widths[column] for column in dataset.modality.column_widths()}
    if path.is_file() and not refresh:
        try:
            stats = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError):
            stats = None  # broken file: recomputed and overwritten below
        if stats_fit(stats, widths):
            return stats
    parts: dict[str, list[np.ndarray]] = {}
    for episode in tqdm(dataset.episodes, desc="statistics", unit="episode", leave=False):
        for column, values in dataset.episode_data(episode.index).items():
            if np.issubdtype(values.dtype, np.number) or values.dtype == np.bool_:
                parts.setdefault(column, []).append(values)
    stats = compute_stats({column: np.concatenate(chunks) for column, chunks in parts.items()})
    if write:
        atomic_write_json(path, stats)
    return stats
