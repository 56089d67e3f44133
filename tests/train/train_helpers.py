"""Datasets, a data config and checks shared by the fine-tuning tests (imported by name, not a conftest)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from groot.data.configs import DataConfig
from groot.data.dataset import GrootDataset
from groot.data.synthetic import TASKS, synthetic_frames, synthetic_modality
from groot.data.writer import Episode, write_dataset

LIBERO_STATE = {"eef_pos": 3, "eef_axis_angle": 3, "gripper_qpos": 2}
LIBERO_ACTION = {"eef_delta_pos": 3, "eef_delta_rot": 3, "gripper": 1}
LIBERO_CAMERAS = ("image", "wrist_image")
LIBERO_ROTATIONS = {"eef_axis_angle": "axis_angle"}


def two_behaviour_dataset(root: Path, episodes_per_behaviour: int, length: int, seed: int) -> Path:
    """LIBERO-layout episodes of two behaviours that the observation tells apart: behaviour +1 holds its
    state near +0.5 and commands actions near +1, behaviour -1 the mirror image (different task text
    and camera tint too); 1 % noise on everything. Learning it means using the observation."""
    rng = np.random.default_rng(seed)
    episodes = []
    for number in range(2 * episodes_per_behaviour):
        sign = 1.0 if number % 2 == 0 else -1.0

        def near(value: float, dims: dict[str, int]) -> dict[str, np.ndarray]:
            return {key: (value + 0.01 * rng.standard_normal((length, dim))).astype(np.float32)
                    for key, dim in dims.items()}

        video = {camera: synthetic_frames(number % 2, i, length, 32, 32)
                 for i, camera in enumerate(LIBERO_CAMERAS)}
        episodes.append(Episode(task=TASKS[number % 2], state=near(0.5 * sign, LIBERO_STATE),
                                action=near(sign, LIBERO_ACTION), video=video))
    modality = synthetic_modality(LIBERO_STATE, LIBERO_ACTION, LIBERO_CAMERAS, LIBERO_ROTATIONS)
    return write_dataset(root, episodes, modality, fps=10, robot_type="synthetic")


def observation(dataset_path: Path, data_config: DataConfig, tag: str = "new_embodiment") -> dict:
    """One raw observation (no action keys) of the dataset, as a robot would send it to a policy."""
    raw = GrootDataset(dataset_path, data_config, tag, transform=False).raw_step(0, 3)
    return {key: value for key, value in raw.items() if not key.startswith("action.")}


def assert_policy_acts(checkpoint: Path, obs: dict, tag: str = "new_embodiment") -> None:
    """The checkpoint alone serves: Policy loads it and maps `obs` to finite LIBERO actions."""
    from groot.policy import Policy

    policy = Policy.from_pretrained(checkpoint, tag, device="cpu")
    actions = policy.get_action(obs)
    assert {k: v.shape for k, v in actions.items()} == {
        f"action.{key}": (16, dim) for key, dim in LIBERO_ACTION.items()}, checkpoint
    assert all(np.isfinite(v).all() for v in actions.values()), checkpoint
