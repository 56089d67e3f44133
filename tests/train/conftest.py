"""Shared fixtures of the fine-tuning tests: one small synthetic LIBERO-layout dataset per session."""

from __future__ import annotations

import pytest

from groot.data.synthetic import make_synthetic_dataset


@pytest.fixture(scope="session")
def libero_dataset(tmp_path_factory):
    """3 episodes x 20 steps, 2 cameras of 32x32, the `libero_panda` data config's keys."""
    return make_synthetic_dataset(
        tmp_path_factory.mktemp("train_data") / "libero", num_episodes=3, episode_length=20,
        cameras=("image", "wrist_image"), image_size=32,
        state_dims={"eef_pos": 3, "eef_axis_angle": 3, "gripper_qpos": 2},
        action_dims={"eef_delta_pos": 3, "eef_delta_rot": 3, "gripper": 1},
        state_rotations={"eef_axis_angle": "axis_angle"})
