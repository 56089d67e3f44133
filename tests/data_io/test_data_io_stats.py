from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from groot.data.lerobot import LeRobotDataset
from groot.data.stats import STAT_NAMES, compute_stats, load_or_compute_stats


def test_compute_stats_matches_numpy():
    rng = np.random.default_rng(0)
    vectors = rng.normal(3.0, 2.0, (500, 4)).astype(np.float32)
    scalars = rng.integers(0, 9, 500)
    stats = compute_stats({"v": vectors, "s": scalars})
    assert set(stats["v"]) == set(STAT_NAMES)
    x = vectors.astype(np.float64)
    np.testing.assert_allclose(stats["v"]["mean"], x.mean(0))
    np.testing.assert_allclose(stats["v"]["std"], x.std(0))
    np.testing.assert_allclose(stats["v"]["min"], x.min(0))
    np.testing.assert_allclose(stats["v"]["max"], x.max(0))
    np.testing.assert_allclose(stats["v"]["q01"], np.percentile(x, 1, axis=0))
    np.testing.assert_allclose(stats["v"]["q99"], np.percentile(x, 99, axis=0))
    assert stats["s"]["max"] == [float(scalars.max())] and len(stats["s"]["mean"]) == 1
    json.dumps(stats)  # plain floats, writable as JSON


def test_compute_stats_rejects_empty():
    with pytest.raises(ValueError, match="column 'x'"):
        compute_stats({"x": np.zeros((0, 3))})


def test_written_stats_cover_all_rows(dataset_root):
    ds = LeRobotDataset(dataset_root)
    states = np.concatenate([ds.episode_data(e.index)["observation.state"] for e in ds.episodes])
    stats = json.loads((dataset_root / "meta/stats.json").read_text())
    written = stats["observation.state"]
    np.testing.assert_allclose(written["mean"], states.astype(np.float64).mean(0), rtol=1e-6)
    np.testing.assert_allclose(written["q99"], np.quantile(states, 0.99, axis=0), rtol=1e-5)
    assert load_or_compute_stats(ds) == stats


@pytest.mark.parametrize("damage", ["missing", "not json", "wrong width"])
def test_stats_recomputed_when_missing_or_invalid(dataset_root, tmp_path, damage):
    root = shutil.copytree(dataset_root, tmp_path / "ds")
    path = root / "meta/stats.json"
    good = json.loads(path.read_text())
    if damage == "missing":
        path.unlink()
    elif damage == "not json":
        path.write_text("{")
    else:
        broken = json.loads(path.read_text())
        broken["action"]["q01"] = broken["action"]["q01"][:3]
        path.write_text(json.dumps(broken))
    stats = load_or_compute_stats(LeRobotDataset(root))
    for column in ("observation.state", "action"):
        for stat in STAT_NAMES:
            np.testing.assert_allclose(stats[column][stat], good[column][stat], rtol=1e-6)
    assert json.loads(path.read_text()) == stats
