from __future__ import annotations

import dataclasses
import json
from collections import Counter

import numpy as np
import pytest
import torch

from groot.data.configs import DataConfig
from groot.data.dataset import GrootDataset, MixtureDataset, padded_rows
from groot.data.lerobot import LeRobotDataset
from groot.data.metadata import DatasetMetadata, merge_metadata
from groot.data.synthetic import make_synthetic_episodes, synthetic_modality
from groot.data.writer import write_dataset
from groot.errors import DatasetError

LANGUAGE = "annotation.human.action.task_description"
CONFIG = DataConfig(
    "synthetic", ["video.front", "video.wrist"], ["state.arm", "state.gripper"],
    ["action.arm", "action.gripper"], [LANGUAGE],
    state_normalization={"state.arm": "min_max", "state.gripper": "min_max"},
    action_normalization={"action.arm": "min_max", "action.gripper": "min_max"}, image_size=16)
WINDOW_CONFIG = dataclasses.replace(CONFIG, observation_indices=[-2, 0], action_indices=[0, 1, 2, 3])


def write(root, lengths, seed, relative_gripper=False, image_size=(24, 32)):
    episodes = make_synthetic_episodes(len(lengths), max(lengths), ("front", "wrist"), image_size, seed=seed)
    for episode, length in zip(episodes, lengths, strict=True):
        for part in (episode.state, episode.action, episode.video):
            for key in part:
                part[key] = part[key][:length]
    modality = synthetic_modality({"arm": 6, "gripper": 1}, {"arm": 6, "gripper": 1}, ("front", "wrist"))
    if relative_gripper:
        gripper = dataclasses.replace(modality.action["gripper"], absolute=False)
        modality = dataclasses.replace(modality, action={**modality.action, "gripper": gripper})
    return write_dataset(root, episodes, modality, fps=10)


@pytest.fixture(scope="module")
def paths(tmp_path_factory):
    root = tmp_path_factory.mktemp("sampling")
    return {"a": write(root / "a", [8, 12, 20], seed=0, relative_gripper=True),
            "b": write(root / "b", [10, 10], seed=1, relative_gripper=True)}


def test_padded_rows_absolute_and_relative():
    values = np.arange(12, dtype=np.float32).reshape(4, 3)
    indices = np.array([-2, 0, 3, 5])
    np.testing.assert_array_equal(padded_rows(values, indices, True), values[[0, 0, 3, 3]])
    expected = values[[0, 0, 3, 3]].copy()
    expected[[0, 3]] = 0
    np.testing.assert_array_equal(padded_rows(values, indices, False), expected)


def test_index_space_and_raw_step(paths):
    dataset = GrootDataset(paths["a"], CONFIG, "new_embodiment", transform=False)
    assert len(dataset) == 40
    assert dataset.locate(0) == (0, 0) and dataset.locate(8) == (1, 0) and dataset.locate(39) == (2, 19)
    step = dataset[9]
    assert step["video.front"].shape == (1, 24, 32, 3) and step["video.front"].dtype == np.uint8
    assert step["state.arm"].shape == (1, 6) and step["action.arm"].shape == (16, 6)
    assert step["state.arm"].dtype == np.float32
    data = LeRobotDataset(paths["a"]).episode_data(1)
    np.testing.assert_array_equal(step["state.arm"], data["observation.state"][1:2, :6])
    assert step[LANGUAGE] == [dataset.reader.tasks[int(data[LANGUAGE][1])]]


def test_window_padding_and_clamping(paths):
    dataset = GrootDataset(paths["a"], WINDOW_CONFIG, "new_embodiment", transform=False)
    reader = LeRobotDataset(paths["a"])
    data = reader.episode_data(0)  # length 8
    first = dataset.raw_step(0, 0)
    np.testing.assert_array_equal(first["state.arm"], data["observation.state"][[0, 0], :6])
    np.testing.assert_array_equal(first["video.front"][0], first["video.front"][1])  # step -2 -> 0
    frame0 = reader.decode_frames(0, "front", data["timestamp"][:1])[0]
    np.testing.assert_array_equal(first["video.front"][1], frame0)
    assert len(first[LANGUAGE]) == 2 and first[LANGUAGE][0] == first[LANGUAGE][1]
    last = dataset.raw_step(0, 6)  # action steps 6, 7, 8, 9 of a length-8 trajectory
    np.testing.assert_array_equal(last["action.arm"], data["action"][[6, 7, 7, 7], :6])  # absolute: edge
    np.testing.assert_array_equal(last["action.gripper"][:2], data["action"][6:8, 6:7])
    np.testing.assert_array_equal(last["action.gripper"][2:], 0.0)  # relative: zeros


def test_transformed_sample_shapes(paths):
    dataset = GrootDataset(paths["a"], CONFIG, "new_embodiment")
    sample = dataset[5]
    assert sample["images"].shape == (2, 16, 16, 3) and sample["images"].dtype == np.uint8
    assert isinstance(sample["language"], str) and sample["language"] in dataset.reader.tasks.values()
    assert sample["state"].shape == (1, 64) and sample["state_mask"].sum() == 7
    assert sample["action"].shape == (16, 32) and sample["action"].dtype == np.float32
    assert sample["action_mask"].sum() == 16 * 7 and sample["embodiment_id"] == 31
    assert np.abs(sample["state"]).max() <= 1 + 1e-5  # min_max normalized


def test_metadata_from_dataset(paths):
    dataset = GrootDataset(paths["a"], CONFIG, "gr1", transform=False)
    meta = dataset.metadata
    columns = [LeRobotDataset(paths["a"]).episode_data(i) for i in range(3)]
    state = np.concatenate([c["observation.state"] for c in columns])
    np.testing.assert_allclose(meta.statistics["state"]["gripper"]["max"], state[:, 6:7].max(0), rtol=1e-6)
    np.testing.assert_allclose(meta.statistics["state"]["arm"]["mean"], state[:, :6].mean(0), rtol=1e-5)
    assert meta.modalities["video"]["front"] == {"resolution": [32, 24], "channels": 3, "fps": 10.0}
    assert meta.modalities["action"]["gripper"] == {"absolute": False, "rotation_type": None, "shape": [1],
                                                    "continuous": True}
    assert meta.embodiment_tag == "gr1"
    restored = DatasetMetadata.from_dict(json.loads(json.dumps(meta.to_dict())))
    assert restored == meta
    broken = meta.to_dict()
    broken["statistics"]["state"]["arm"]["q99"] = [0.0]
    with pytest.raises(DatasetError, match="statistics.state.arm.q99"):
        DatasetMetadata.from_dict(broken)


def test_missing_key_is_reported(paths):
    config = dataclasses.replace(CONFIG, state_keys=["state.arm", "state.elbow"], state_normalization={})
    with pytest.raises(DatasetError, match="state.elbow"):
        GrootDataset(paths["a"], config, "new_embodiment")
    with pytest.raises(ValueError, match="new_embodiment"):
        GrootDataset(paths["a"], CONFIG, "robot_x")


def test_dataloader_workers(paths):
    dataset = GrootDataset(paths["b"], CONFIG, "new_embodiment")
    loader = torch.utils.data.DataLoader(dataset, batch_size=4, num_workers=2, collate_fn=list)
    batches = list(loader)
    assert sum(len(b) for b in batches) == len(dataset) == 20
    assert all(sample["images"].shape == (2, 16, 16, 3) for batch in batches for sample in batch)


# ---- mixture ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def datasets(paths):
    return [GrootDataset(paths["a"], CONFIG, "new_embodiment"), GrootDataset(paths["b"], CONFIG, "gr1")]


def test_mixture_weights_and_epoch_length(datasets):
    balanced = MixtureDataset(datasets)
    np.testing.assert_allclose(balanced.dataset_weights, [40 / 60, 20 / 60])
    assert len(balanced) == 60
    unbalanced = MixtureDataset(datasets, balance_dataset_weights=False)
    np.testing.assert_allclose(unbalanced.dataset_weights, [0.5, 0.5])
    assert len(unbalanced) == 80  # max(40 / 0.5, 20 / 0.5)
    secondary = MixtureDataset(datasets, weights=[1.0, 0.5])
    np.testing.assert_allclose(secondary.dataset_weights, [40 / 50, 10 / 50])
    assert len(secondary) == 50  # only the primary dataset (weight 1.0) sets the length


@pytest.mark.parametrize("balance_trajectories", [True, False])
def test_mixture_sampling_frequencies_converge(datasets, balance_trajectories):
    mixture = MixtureDataset(datasets, weights=[1.0, 1.0], balance_trajectory_weights=balance_trajectories)
    draws = [mixture.sample_location(i) for i in range(6000)]
    which = Counter(d for d, _, _ in draws)
    assert which[0] / 6000 == pytest.approx(40 / 60, abs=0.025)
    trajectories = Counter(t for d, t, _ in draws if d == 0)
    expected = np.array([8, 12, 20]) / 40 if balance_trajectories else np.full(3, 1 / 3)
    observed = np.array([trajectories[t] for t in range(3)]) / which[0]
    np.testing.assert_allclose(observed, expected, atol=0.03)
    lengths = {0: [8, 12, 20], 1: [10, 10]}
    assert all(0 <= base < lengths[d][t] for d, t, base in draws)
    bases = Counter(base for d, t, base in draws if (d, t) == (0, 2))
    assert len(bases) == 20  # uniform base index reaches every step


def test_mixture_is_deterministic_per_epoch_index_seed(datasets):
    first, second = MixtureDataset(datasets, seed=7), MixtureDataset(datasets, seed=7)
    locations = [first.sample_location(i) for i in range(50)]
    assert locations == [second.sample_location(i) for i in range(50)]
    assert locations != [MixtureDataset(datasets, seed=8).sample_location(i) for i in range(50)]
    second.set_epoch(1)
    assert locations != [second.sample_location(i) for i in range(50)]
    evaluation = MixtureDataset(datasets, training=False)
    other_seed = MixtureDataset(datasets, training=False, seed=99)
    assert evaluation.sample_location(3) == other_seed.sample_location(3)
    sample = first[4]
    assert sample["embodiment_id"] in (31, 24)


def test_merged_stats_match_concatenated_data():
    rng = np.random.default_rng(3)
    parts = [rng.normal(1.0, 2.0, size=(n, 3)) for n in (50, 150)]

    def metadata(values):
        q01, q99 = np.quantile(values, [0.01, 0.99], axis=0)
        stats = {"mean": values.mean(0), "std": values.std(0), "min": values.min(0), "max": values.max(0),
                 "q01": q01, "q99": q99}
        return DatasetMetadata({"state": {"s": {k: v.tolist() for k, v in stats.items()}}, "action": {}},
                               {"state": {"s": {"absolute": True, "rotation_type": None, "shape": [3],
                                                "continuous": True}}, "action": {}, "video": {}}, "gr1")

    merged = merge_metadata([metadata(p) for p in parts], [50, 150]).statistics["state"]["s"]
    everything = np.concatenate(parts)
    np.testing.assert_allclose(merged["mean"], everything.mean(0), rtol=1e-12)
    np.testing.assert_allclose(merged["std"], everything.std(0), rtol=1e-10)
    np.testing.assert_array_equal(merged["min"], everything.min(0))
    np.testing.assert_array_equal(merged["max"], everything.max(0))
    q99 = [np.quantile(p, 0.99, axis=0) for p in parts]
    np.testing.assert_allclose(merged["q99"], 0.25 * q99[0] + 0.75 * q99[1], rtol=1e-12)
    by_extremes = merge_metadata([metadata(p) for p in parts], [1, 3], "min_max").statistics["state"]["s"]
    np.testing.assert_allclose(by_extremes["q99"], np.maximum(*q99), rtol=1e-12)


def test_mixture_merges_stats_per_tag(paths, datasets):
    same_tag = [GrootDataset(paths[k], CONFIG, "new_embodiment") for k in ("a", "b")]
    mixture = MixtureDataset(same_tag)
    columns = [LeRobotDataset(paths[k]).episode_data(i) for k, n in (("a", 3), ("b", 2)) for i in range(n)]
    state = np.concatenate([c["observation.state"] for c in columns]).astype(np.float64)
    merged = mixture.metadata["new_embodiment"].statistics["state"]["arm"]
    np.testing.assert_allclose(merged["mean"], state[:, :6].mean(0), rtol=1e-5)
    np.testing.assert_allclose(merged["std"], state[:, :6].std(0), rtol=1e-5)
    np.testing.assert_allclose(merged["max"], state[:, :6].max(0), rtol=1e-6)
    assert all(d.metadata is mixture.metadata["new_embodiment"] for d in same_tag)
    separate = MixtureDataset(datasets)
    assert set(separate.metadata) == {"new_embodiment", "gr1"}
    assert separate.metadata["gr1"].statistics == datasets[1].metadata.statistics
