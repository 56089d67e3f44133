"""Serving an N1.6 checkpoint in the official layout: weights, config.json and the three processor files
(`processor_config.json`, `statistics.json`, `embodiment_id.json`), no `experiment_cfg/`.

The expected numbers follow the original's StateActionProcessor (GROOT_N16_SPEC 4.5, 4.6): min-max
2 (x - min) / (max - min) - 1 clipped to [-1, 1], mean/std (x - mean) / std, [sin x, cos x] for the
sin/cos groups; decoding (clip(y, -1, 1) + 1) / 2 (max - min) + min or y std + mean, RELATIVE groups
with their per-step `relative_action` statistics and the last observed state added back.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import signal
import subprocess
import sys

import numpy as np
import pytest
import torch

from groot.data.metadata import STAT_NAMES
from groot.errors import CheckpointError, ObservationError
from groot.model.gr00t_n16 import GR00TN16
from groot.model.n16_data_config import n16_data_config
from groot.model.n16_processor_files import processor_kwargs, read_n16_processor_files
from groot.policy import Policy
from groot.serve.client import InferenceClient

TASK = "annotation.human.action.task_description"
# tag -> (cameras, state groups {name: D}, action groups {name: D}, action steps)
LIBERO = (["image", "wrist_image"], {"pos": 3, "gripper": 2}, {"pos": 3, "gripper": 1}, 8)
NEW = (["ego_view"], {"left_arm": 4, "waist": 2}, {"left_arm": 4, "waist": 2}, 12)
NEW_EMBODIMENT_INDEX = 5  # embodiment_id.json numbers it otherwise than the N1.6 table (10)


def _entry(indices, keys, **extra):
    return {"delta_indices": list(indices), "modality_keys": list(keys), "sin_cos_embedding_keys": None,
            "mean_std_embedding_keys": None, "action_configs": None, **extra}


def _action_config(rep, type_="NON_EEF", state_key=None):
    return {"rep": rep, "type": type_, "format": "DEFAULT", "state_key": state_key}


def _stats(rng, dim, steps=None):
    shape = (steps, dim) if steps else (dim,)
    low = -1 - rng.random(shape)
    high = 1 + rng.random(shape)
    values = {"min": low, "max": high, "mean": rng.normal(0, 0.3, shape), "std": 0.5 + rng.random(shape),
              "q01": low + 0.1, "q99": high - 0.1}
    return {stat: values[stat].tolist() for stat in STAT_NAMES}


def _modality_configs():
    cameras, state, action, steps = LIBERO
    libero = {"video": _entry([0], cameras), "language": _entry([0], [TASK]),
              "state": _entry([0], state, mean_std_embedding_keys=["pos"]),
              "action": _entry(range(steps), action, mean_std_embedding_keys=["pos"],
                               action_configs=[_action_config("ABSOLUTE")] * 2)}
    cameras, state, action, steps = NEW
    new = {"video": _entry([0], cameras), "language": _entry([0], [TASK]),
           "state": _entry([0], state, sin_cos_embedding_keys=list(state)),
           "action": _entry(range(steps), action, mean_std_embedding_keys=["waist"],
                            action_configs=[_action_config("RELATIVE"), _action_config("ABSOLUTE")])}
    return {"libero_panda": libero, "new_embodiment": new}


@pytest.fixture(scope="module")
def official_dir(tmp_path_factory):
    """n1.6-tiny weights saved by groot, experiment_cfg/ left out, processor files for two tags."""
    torch.manual_seed(0)
    model = GR00TN16.from_preset("n1.6-tiny")
    root = model.save_pretrained(tmp_path_factory.mktemp("official") / "ckpt")
    assert not (root / "experiment_cfg").exists()
    rng = np.random.default_rng(0)
    kwargs = processor_kwargs(model.config, _modality_configs())
    (root / "processor_config.json").write_text(json.dumps(
        {"processor_class": "Gr00tN1d6Processor", "processor_kwargs": kwargs}))
    statistics = {
        "libero_panda": {"state": {g: _stats(rng, d) for g, d in LIBERO[1].items()},
                         "action": {g: _stats(rng, d) for g, d in LIBERO[2].items()}},
        "new_embodiment": {"state": {g: _stats(rng, d) for g, d in NEW[1].items()},
                           "action": {g: _stats(rng, d) for g, d in NEW[2].items()},
                           "relative_action": {"left_arm": _stats(rng, 4, steps=NEW[3])}},
    }
    (root / "statistics.json").write_text(json.dumps(statistics))
    (root / "embodiment_id.json").write_text(json.dumps({"libero_panda": 2,
                                                         "new_embodiment": NEW_EMBODIMENT_INDEX}))
    return root


def _observation(layout, height, width, seed=0):
    cameras, state, _, _ = layout
    rng = np.random.default_rng(seed)
    obs = {f"video.{c}": rng.integers(0, 256, (1, height, width, 3), dtype=np.uint8) for c in cameras}
    obs |= {f"state.{g}": rng.normal(0, 0.7, (1, d)).astype(np.float32) for g, d in state.items()}
    obs[TASK] = ["Pick up the cube!"]
    return obs


def _stat(root, tag, block, group, name):
    return np.asarray(json.loads((root / "statistics.json").read_text())[tag][block][group][name], np.float32)


def test_the_data_config_follows_the_processor_files(official_dir):
    files = read_n16_processor_files(official_dir)
    model_config = GR00TN16.from_preset("n1.6-tiny").config
    libero = n16_data_config(files, "libero_panda", model_config)
    assert libero.video_keys == ["video.image", "video.wrist_image"]
    assert libero.state_keys == ["state.pos", "state.gripper"] and libero.language_keys == [TASK]
    assert (libero.observation_indices, libero.action_indices) == ([0], list(range(8)))
    assert libero.state_normalization == {"state.pos": "mean_std", "state.gripper": "min_max"}
    assert libero.action_normalization == {"action.pos": "mean_std", "action.gripper": "min_max"}
    assert not libero.state_sincos and libero.relative_action_keys == [] and libero.clip_outliers
    assert (libero.image_resize, libero.image_size, libero.crop_scale, libero.image_multiple) == (
        "shortest_edge", model_config.shortest_image_edge, 0.95, 28)
    assert (libero.max_state_dim, libero.max_action_dim, libero.max_action_horizon) == (32, 32, 16)
    assert (libero.embodiment_table, libero.embodiment_index, libero.projector_index("libero_panda")) == (
        "n1.6", None, 2)
    new = n16_data_config(files, "new_embodiment", model_config)
    assert new.state_sincos and new.state_normalization == {}
    assert new.action_normalization == {"action.left_arm": "min_max", "action.waist": "mean_std"}
    assert new.relative_action_keys == ["action.left_arm"] and new.action_indices == list(range(12))
    assert new.embodiment_index == NEW_EMBODIMENT_INDEX == new.projector_index("new_embodiment")


@pytest.mark.parametrize("tag", ["libero_panda", "new_embodiment"])
def test_each_tag_serves_frames_of_any_size(official_dir, tag):
    layout = LIBERO if tag == "libero_panda" else NEW
    policy = Policy.from_pretrained(official_dir, tag, device="cpu", fast=False)
    assert policy.image_tokens is None  # the files record no camera resolution
    image_token = policy.processor.tokenizer.image_token_id
    counts = set()
    for height, width in ((36, 48), (30, 90)):
        obs = _observation(layout, height, width)
        actions = policy.get_action(obs, seed=1)
        assert {k: v.shape for k, v in actions.items()} == {f"action.{g}": (layout[3], d)
                                                            for g, d in layout[2].items()}
        assert all(np.isfinite(v).all() and v.dtype == np.float32 for v in actions.values())
        samples, _ = policy.model_samples(obs)
        batch = policy.processor(samples)
        per_image = policy.image_tokens_at(height, width)
        assert int((batch.input_ids == image_token).sum()) == len(layout[0]) * per_image
        counts.add(per_image)
        expected_index = 2 if tag == "libero_panda" else NEW_EMBODIMENT_INDEX
        assert samples[0]["embodiment_id"] == expected_index
    assert counts == {6, 12}  # 36 x 48 -> 56 x 84: 2 x 3 grids of 28; 30 x 90 -> 56 x 168: 2 x 6
    with pytest.raises(ObservationError, match="expected shape \\[1, H, W, 3\\]"):
        policy.get_action({**_observation(layout, 36, 48), f"video.{layout[0][0]}": np.zeros((1, 36, 48, 4),
                                                                                              np.uint8)})


def test_the_engine_keys_its_shapes_by_frame_size_and_matches_eager(official_dir):
    eager = Policy.from_pretrained(official_dir, "libero_panda", device="cpu", fast=False)
    engine = Policy.from_pretrained(official_dir, "libero_panda", device="cpu", fast=True, exact=True)
    assert engine.engine is not None
    for height, width in ((36, 48), (30, 90)):
        obs = _observation(LIBERO, height, width, seed=height)
        want, got = eager.get_action(obs, seed=4), engine.get_action(obs, seed=4)
        for key in want:
            np.testing.assert_allclose(got[key], want[key], rtol=1e-5, atol=1e-5)
    assert {key.frame for key in engine.engine._slots} == {(36, 48), (30, 90)}


def test_cameras_of_one_observation_share_one_size(official_dir):
    policy = Policy.from_pretrained(official_dir, "libero_panda", device="cpu", fast=False)
    obs = _observation(LIBERO, 36, 48)
    obs["video.wrist_image"] = np.zeros((1, 40, 48, 3), np.uint8)
    with pytest.raises(ObservationError, match="expected frames of one size.*video.wrist_image 40x48"):
        policy.get_action(obs)


def test_state_enters_the_model_as_the_original_normalizes_it(official_dir):
    libero = Policy.from_pretrained(official_dir, "libero_panda", device="cpu", fast=False)
    obs = _observation(LIBERO, 36, 48, seed=3)
    obs["state.gripper"][0, 0] = 50.0  # outside [min, max]: clipped to 1
    state = libero.model_samples(obs)[0][0]["state"][0]  # [max_state_dim]
    pos = (obs["state.pos"][0] - _stat(official_dir, "libero_panda", "state", "pos", "mean")) / _stat(
        official_dir, "libero_panda", "state", "pos", "std")
    low, high = (_stat(official_dir, "libero_panda", "state", "gripper", s) for s in ("min", "max"))
    gripper = np.clip(2 * (obs["state.gripper"][0] - low) / (high - low) - 1, -1, 1)
    np.testing.assert_allclose(state[:5], np.concatenate([pos, gripper]), rtol=1e-5, atol=1e-6)
    assert gripper[0] == 1 and not state[5:].any()
    new = Policy.from_pretrained(official_dir, "new_embodiment", device="cpu", fast=False)
    obs = _observation(NEW, 36, 48, seed=4)
    state = new.model_samples(obs)[0][0]["state"][0]
    arm, waist = obs["state.left_arm"][0], obs["state.waist"][0]
    np.testing.assert_allclose(state[:12], np.concatenate([np.sin(arm), np.cos(arm), np.sin(waist),
                                                           np.cos(waist)]), rtol=1e-6, atol=1e-6)


def test_relative_groups_add_the_state_back(official_dir):
    policy = Policy.from_pretrained(official_dir, "new_embodiment", device="cpu", fast=False)
    obs = _observation(NEW, 36, 48, seed=5)
    normalized = np.random.default_rng(6).uniform(-1.5, 1.5, (1, 16, 32)).astype(np.float32)
    actions = policy.decode_actions(normalized, policy.reference_state(obs))
    low, high = (_stat(official_dir, "new_embodiment", "relative_action", "left_arm", s)
                 for s in ("min", "max"))  # per step [12, 4]
    relative = (np.clip(normalized[0, :12, :4], -1, 1) + 1) / 2 * (high - low) + low
    last_state = obs["state.left_arm"][-1]  # [T, D] -> [D]
    np.testing.assert_allclose(actions["action.left_arm"][0], relative + last_state,
                               rtol=1e-5, atol=1e-5)
    mean, std = (_stat(official_dir, "new_embodiment", "action", "waist", s) for s in ("mean", "std"))
    np.testing.assert_allclose(actions["action.waist"][0], normalized[0, :12, 4:6] * std + mean,
                               rtol=1e-5, atol=1e-5)


def test_a_tag_the_files_do_not_describe_is_one_clear_error(official_dir):
    with pytest.raises(CheckpointError, match=r"statistics.json: expected a block for embodiment tag 'gr1', "
                                              r"found tags \['libero_panda', 'new_embodiment'\]"):
        Policy.from_pretrained(official_dir, "gr1", device="cpu", fast=False)


def _edited(files, edit):
    kwargs = json.loads(json.dumps(files.processor_kwargs))
    edit(kwargs, kwargs["modality_configs"]["new_embodiment"])
    return dataclasses.replace(files, processor_kwargs=kwargs)


@pytest.mark.parametrize(("edit", "match"), [
    (lambda k, m: k.update(use_percentiles=True), "key 'processor_kwargs.use_percentiles': expected false"),
    (lambda k, m: k.update(clip_outliers=False), "key 'processor_kwargs.clip_outliers': expected true"),
    (lambda k, m: k.pop("use_albumentations"), "key 'processor_kwargs.use_albumentations': expected true"),
    (lambda k, m: m["state"].update(sin_cos_embedding_keys=["waist"]),
     "key 'processor_kwargs.modality_configs.new_embodiment.state.sin_cos_embedding_keys': expected every"),
    (lambda k, m: m["action"]["action_configs"][0].update(type="EEF"),
     r"modality_configs.new_embodiment.action.action_configs\[0\].type': expected NON_EEF"),
    (lambda k, m: m["action"]["action_configs"][0].update(state_key="waist"),
     r"action_configs\[0\].state_key': expected null or 'left_arm'"),
    (lambda k, m: m["video"].update(delta_indices=[-1, 0]),
     "state.delta_indices': expected the video's steps"),
    (lambda k, m: k.update(max_state_dim=64),
     "key 'processor_kwargs.max_state_dim': expected 32, the model config's value"),
])
def test_what_groot_would_compute_differently_is_refused(official_dir, edit, match):
    files = read_n16_processor_files(official_dir)
    model_config = GR00TN16.from_preset("n1.6-tiny").config
    with pytest.raises(CheckpointError, match=match):
        n16_data_config(_edited(files, edit), "new_embodiment", model_config)


def test_degenerate_statistics_the_original_treats_otherwise_are_refused(official_dir):
    files = read_n16_processor_files(official_dir)
    statistics = json.loads(json.dumps(files.statistics))
    waist = statistics["new_embodiment"]["action"]["waist"]
    waist["std"][1] = 0.0
    with pytest.raises(CheckpointError,
                       match=r"new_embodiment.action.waist.std': expected std > 0 .* at \[1\]"):
        n16_data_config(dataclasses.replace(files, statistics=statistics), "new_embodiment")
    gripper = statistics["libero_panda"]["state"]["gripper"]
    gripper["max"][0] = gripper["min"][0] * (1 + 1e-7)
    with pytest.raises(CheckpointError, match=r"libero_panda.state.gripper.max'.* found dims \[0\]"):
        n16_data_config(dataclasses.replace(files, statistics=statistics), "libero_panda")


def test_a_policy_saved_from_the_official_layout_serves_the_same_actions(official_dir, tmp_path):
    policy = Policy.from_pretrained(official_dir, "new_embodiment", device="cpu", fast=False)
    saved = policy.save_pretrained(tmp_path / "saved")
    assert json.loads((saved / "embodiment_id.json").read_text())["new_embodiment"] == NEW_EMBODIMENT_INDEX
    again = Policy.from_pretrained(saved, "new_embodiment", device="cpu", fast=False)
    obs = _observation(NEW, 36, 48, seed=7)
    first, second = policy.get_action(obs, seed=2), again.get_action(obs, seed=2)
    for key in first:
        np.testing.assert_array_equal(first[key], second[key])


def test_open_loop_eval_runs_a_tag_outside_the_n15_table(official_dir, tmp_path):
    from groot.cli import main
    from groot.data.synthetic import make_synthetic_dataset

    dataset = make_synthetic_dataset(tmp_path / "data", num_episodes=1, episode_length=12,
                                     cameras=LIBERO[0], image_size=(36, 48), state_dims=LIBERO[1],
                                     action_dims=LIBERO[2])
    code = main(["eval", "open-loop", "--model-path", str(official_dir), "--dataset-path", str(dataset),
                 "--embodiment-tag", "libero_panda", "--steps", "8", "--action-horizon", "8",
                 "--device", "cpu",
                 "--out", str(tmp_path / "eval")])
    assert code == 0
    summary = json.loads((tmp_path / "eval" / "summary.json").read_text())
    assert np.isfinite(summary["mean_mse"])


def test_groot_serve_answers_for_an_official_layout_checkpoint(official_dir):
    command = [sys.executable, "-m", "groot.cli", "serve", "--model-path", str(official_dir),
               "--embodiment-tag", "libero_panda", "--device", "cpu", "--port", "0"]
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        port = None
        for line in process.stderr:
            found = re.search(r"serving on tcp://127\.0\.0\.1:(\d+) \(n1\.6 protocol", line)
            if found:
                port = int(found.group(1))
                break
        assert port is not None, "the server never logged its address and protocol"
        with InferenceClient("127.0.0.1", port, timeout_ms=30_000, protocol="n1.6") as client:
            actions = client.get_action(_observation(LIBERO, 30, 52))
            shapes = {k: v.shape for k, v in actions.items()}
            assert shapes == {"action.pos": (8, 3), "action.gripper": (8, 1)}
            assert all(np.isfinite(v).all() for v in actions.values())
        process.send_signal(signal.SIGTERM)
        _, log = process.communicate(timeout=30)
    finally:
        process.kill()
    assert process.returncode == 0, log
