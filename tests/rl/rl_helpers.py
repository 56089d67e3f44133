"""Helpers of the RL tests: a tiny `libero_panda` checkpoint (random weights, hand-made statistics) and
fake LIBERO environments."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import torch

from groot.data.configs import libero_panda
from groot.data.metadata import DatasetMetadata
from groot.model.config import preset_config
from groot.model.gr00t_n16 import model_class
from groot.rl.envs import ChunkResult
from groot.sim import libero

CAMERA = 32  # camera resolution of the fake and the smoke-test environments


def libero_metadata(camera: int) -> DatasetMetadata:
    def stats(low: float, high: float, dim: int) -> dict[str, list[float]]:
        return {
            "mean": [0.0] * dim,
            "std": [1.0] * dim,
            "min": [low] * dim,
            "max": [high] * dim,
            "q01": [low] * dim,
            "q99": [high] * dim,
        }

    state = {key: stats(-1.0, 1.0, dim) for key, dim in libero.STATE_DIMS.items()}
    action = {key: stats(-1.0, 1.0, dim) for key, dim in libero.ACTION_DIMS.items()}
    modalities = {
        "video": {
            key: {"resolution": [camera, camera], "channels": 3, "fps": libero.CONTROL_FPS}
            for key in libero.VIDEO_KEYS
        },
        "state": {
            key: {"absolute": True, "rotation_type": libero.STATE_ROTATIONS.get(key), "shape": [dim],
                  "continuous": True}
            for key, dim in libero.STATE_DIMS.items()
        },
        "action": {
            key: {"absolute": False, "rotation_type": None, "shape": [dim], "continuous": True}
            for key, dim in libero.ACTION_DIMS.items()
        },
    }
    return DatasetMetadata({"state": state, "action": action}, modalities, "new_embodiment")


def make_tiny_checkpoint(root: Path, preset: str = "tiny", camera: int = CAMERA) -> Path:
    """A random-weight `tiny` (N1.5) or `n1.6-tiny` checkpoint, libero_panda data config sized to it."""
    torch.manual_seed(0)
    model = model_class(preset_config(preset)).from_preset(preset)
    head = model.config.action_head_cfg
    config = dataclasses.replace(libero_panda(), image_size=model.config.backbone_cfg.vision.image_size,
                                 max_state_dim=head.max_state_dim, max_action_dim=head.max_action_dim)
    metadata = {"new_embodiment": libero_metadata(camera)}
    return model.save_pretrained(root / preset, metadata=metadata, data_config=config)


class FakeLibero:
    """The `VectorLibero` surface without a simulator: deterministic observations that follow the
    actions; an episode succeeds when the summed x translation of its actions exceeds `goal`."""

    def __init__(self, num_envs: int, max_steps: int, goal: float = 0.2):
        self.num_envs, self.max_steps, self.goal = num_envs, max_steps, goal
        self.position = np.zeros(num_envs)
        self.steps = [0] * num_envs
        self.done = [False] * num_envs

    def _obs(self, i: int) -> dict:
        shade = np.uint8(int(100 + 50 * np.tanh(self.position[i])))
        image = np.full((CAMERA, CAMERA, 3), shade, dtype=np.uint8)
        image[: 4 + i, :4] = 255
        return {
            "state.eef_pos": np.array([self.position[i], 0, 0], np.float32),
            "state.eef_axis_angle": np.zeros(3, np.float32),
            "state.gripper_qpos": np.zeros(2, np.float32),
            libero.LANGUAGE_KEY: "push the block right",
            "video.image": image,
            "video.wrist_image": image[::-1].copy(),
        }

    def reset(self) -> list[dict]:
        self.position[:] = 0
        self.steps = [0] * self.num_envs
        self.done = [False] * self.num_envs
        return [self._obs(i) for i in range(self.num_envs)]

    def step(self, chunks: dict, record: frozenset = frozenset()) -> dict:
        results = {}
        for i, actions in chunks.items():
            reward, frames, success = 0.0, [], False
            for action in actions:
                if self.done[i]:
                    break
                self.position[i] += action[0]
                self.steps[i] += 1
                success = self.position[i] > self.goal
                self.done[i] = success or self.steps[i] >= self.max_steps
                reward = 1.0 if success else reward
                if i in record:
                    obs = self._obs(i)
                    frames.append(np.concatenate([obs["video.image"], obs["video.wrist_image"]], 1))
            results[i] = ChunkResult(
                self._obs(i), reward, bool(self.done[i]), bool(success), self.steps[i], frames
            )
        return results
