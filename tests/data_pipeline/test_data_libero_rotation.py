"""The `libero_panda` data config feeds the end-effector orientation as a continuous 6-D rotation.

LIBERO's gripper-down pose is a rotation by about pi about an axis close to x: its axis-angle form
(angle in [0, pi]) flips between +pi and -pi axes from one step to the next, a 2 pi jump in the first
component. The data config converts it (metadata rotation_type `axis_angle`, written by the LIBERO
data generator) to `rotation_6d`, which moves by a small amount per step.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from groot.data.configs import DataConfig, get_data_config
from groot.data.dataset import GrootDataset
from groot.data.rotation import convert_rotation, to_matrix
from groot.data.writer import Episode, write_dataset
from groot.sim import libero
from groot.sim.generate import libero_modality

TAG = "new_embodiment"
STEPS = 60


def gripper_down_wobble(steps: int = STEPS) -> np.ndarray:
    """Unit quaternions (x, y, z, w) of a rotation by pi +- 0.05 rad about an axis within ~3 degrees of
    x that wobbles from step to step (the angle crosses pi several times). [T, 4]"""
    t = np.arange(steps)
    angle = np.pi + 0.05 * np.sin(0.7 * t)
    axis = np.stack([np.ones(steps), 0.05 * np.sin(0.3 * t), 0.05 * np.cos(0.2 * t)], -1)
    axis /= np.linalg.norm(axis, axis=-1, keepdims=True)
    return np.concatenate([axis * np.sin(angle / 2)[:, None], np.cos(angle / 2)[:, None]], -1)


@pytest.fixture(scope="module")
def wobble_dataset(tmp_path_factory):
    """One episode in the generator's layout (its modality.json) whose orientation is the wobble."""
    rng = np.random.default_rng(0)
    axis_angle = libero.quat_xyzw_to_axis_angle(gripper_down_wobble()).astype(np.float32)
    state = {"eef_pos": rng.uniform(-0.2, 0.2, (STEPS, 3)).astype(np.float32), "eef_axis_angle": axis_angle,
             "gripper_qpos": rng.uniform(0, 0.04, (STEPS, 2)).astype(np.float32)}
    action = {"eef_delta_pos": rng.uniform(-1, 1, (STEPS, 3)).astype(np.float32),
              "eef_delta_rot": rng.uniform(-1, 1, (STEPS, 3)).astype(np.float32),
              "gripper": np.sign(rng.uniform(-1, 1, (STEPS, 1))).astype(np.float32)}
    video = {key: np.zeros((STEPS, 16, 16, 3), np.uint8) for key in libero.VIDEO_KEYS}
    root = tmp_path_factory.mktemp("wobble") / "dataset"
    return write_dataset(root, [Episode("pick up the milk", state, action, video)], libero_modality(),
                         fps=libero.CONTROL_FPS)


def state_transform(config: DataConfig, dataset_path):
    """The config's state transform with the dataset's metadata."""
    dataset = GrootDataset(dataset_path, config, TAG, transform=False)
    transform = config.transform()
    transform.set_metadata(dataset.metadata)
    return transform.transforms[1], dataset.metadata


def test_generator_marks_the_orientation_as_an_absolute_axis_angle():
    spec = libero_modality().state["eef_axis_angle"]
    assert (spec.rotation_type, spec.absolute) == ("axis_angle", True)
    actions = libero_modality().action
    assert not actions["eef_delta_pos"].absolute and not actions["eef_delta_rot"].absolute


def test_registry_config_converts_only_the_state_orientation():
    config = get_data_config("libero_panda")
    assert config.state_target_rotations == {"state.eef_axis_angle": "rotation_6d"}
    assert config.action_target_rotations == {}  # OSC_POSE deltas: relative, left as they are


def test_raw_axis_angle_jumps_and_the_6d_state_does_not(wobble_dataset):
    stored = GrootDataset(wobble_dataset, get_data_config("libero_panda"), TAG, transform=False)
    raw = np.stack([stored.raw_step(0, t)["state.eef_axis_angle"][0] for t in range(STEPS)])  # [T, 3]
    jumps = np.abs(np.diff(raw[:, 0]))
    assert (jumps > 6.0).sum() >= 3, "the synthetic trajectory should cross the +-pi discontinuity"

    transform, _ = state_transform(get_data_config("libero_panda"), wobble_dataset)
    out = transform.apply({"state.eef_axis_angle": raw.copy()})["state.eef_axis_angle"]
    assert out.shape == (STEPS, 6)
    step_change = np.linalg.norm(np.diff(out, axis=0), axis=-1)
    assert step_change.max() < 0.2, step_change.max()
    # the 6 values are the first two rows of the rotation matrix (fixed bounds +-1: no rescaling)
    matrices = to_matrix(torch.from_numpy(raw).double(), "axis_angle").numpy()
    np.testing.assert_allclose(out, matrices[:, :2, :].reshape(STEPS, 6), atol=1e-5)


def test_6d_state_round_trips_to_the_same_rotation(wobble_dataset):
    transform, _ = state_transform(get_data_config("libero_panda"), wobble_dataset)
    raw = libero.quat_xyzw_to_axis_angle(gripper_down_wobble()).astype(np.float32)
    out = transform.apply({"state.eef_axis_angle": raw.copy()})["state.eef_axis_angle"]
    back = transform.unapply({"state.eef_axis_angle": out})["state.eef_axis_angle"]
    assert back.shape == raw.shape and back.dtype == raw.dtype
    same = lambda x: to_matrix(torch.from_numpy(np.asarray(x)).double(), "axis_angle")  # noqa: E731
    torch.testing.assert_close(same(back), same(raw), atol=1e-5, rtol=0)
    via_6d = convert_rotation(torch.from_numpy(out).double(), "rotation_6d", "axis_angle")
    torch.testing.assert_close(same(via_6d), same(raw), atol=1e-5, rtol=0)


def test_packed_state_is_pos_6d_gripper(wobble_dataset):
    config = get_data_config("libero_panda")
    dataset = GrootDataset(wobble_dataset, config, TAG)
    sample = dataset[5]
    assert int(sample["state_mask"][0].sum()) == 3 + 6 + 2
    raw = GrootDataset(wobble_dataset, config, TAG, transform=False).raw_step(0, 5)
    rotation = to_matrix(torch.from_numpy(np.asarray(raw["state.eef_axis_angle"])).double(), "axis_angle")
    np.testing.assert_allclose(sample["state"][0, 3:9], rotation[0, :2, :].reshape(6).numpy(), atol=1e-5)


def test_a_checkpoint_config_saved_before_the_change_still_loads_and_runs(wobble_dataset):
    """Stored experiment_cfg/data_config.json of the earlier libero_panda (no target rotations): the
    checkpoint keeps its own 8-dim state layout; only the registry's config changed."""
    stored = get_data_config("libero_panda").to_dict()
    stored["state_target_rotations"] = {}
    old = DataConfig.from_dict(stored)
    transform, metadata = state_transform(old, wobble_dataset)
    raw = np.asarray([[0.1, 0.2, 0.3]], np.float32)
    out = transform.apply({"state.eef_axis_angle": raw.copy()})["state.eef_axis_angle"]
    stats = metadata.key_stats("state", "eef_axis_angle")
    np.testing.assert_allclose(out, 2 * (raw - stats["min"]) / (stats["max"] - stats["min"]) - 1, atol=1e-5)
    assert int(GrootDataset(wobble_dataset, old, TAG)[0]["state_mask"][0].sum()) == 3 + 3 + 2


def test_a_dataset_without_the_rotation_type_is_refused_with_the_key(tmp_path):
    from groot.data.synthetic import make_synthetic_dataset
    from groot.errors import DatasetError

    path = make_synthetic_dataset(tmp_path / "plain", num_episodes=1, episode_length=4,
                                  cameras=libero.VIDEO_KEYS, image_size=16, state_dims=libero.STATE_DIMS,
                                  action_dims=libero.ACTION_DIMS)
    with pytest.raises(DatasetError, match="eef_axis_angle.rotation_type"):
        GrootDataset(path, get_data_config("libero_panda"), TAG)
