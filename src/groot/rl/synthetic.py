"""Simulator-free LIBERO stand-ins for running `groot rl`'s roles without MuJoCo (tests, benchmarks).

`SyntheticLibero` has the surface `RolloutWorker` uses of `VectorLibero` (`num_envs`, `reset`, `step`)
and its episode contract (chunk reward +1 at the first success step, done at success or `max_steps`,
no auto-reset), stepped in this process. Observations carry the `libero_panda` keys; the agent view
is a flat shade that follows the end effector's x position, with an env-specific corner mark, the
wrist view its upside-down copy. An episode succeeds once the summed x translation of its executed
actions exceeds `goal`; `goal=None`: never, so every episode runs `max_steps` steps (a full-length
rollout batch whatever the policy does).

`synthetic_libero_metadata(camera)`: `libero_panda` statistics and modality metadata (min-max bounds
of +-1, zero mean, unit std) for a random-weight checkpoint that will meet these observations.
"""

from __future__ import annotations

import numpy as np

from groot.data.metadata import DatasetMetadata
from groot.rl.envs import ChunkResult
from groot.sim import libero

INSTRUCTION = "push the block right"


class SyntheticLibero:
    """`num_envs` synthetic environments of `camera` x `camera` frames (see the module docstring)."""

    def __init__(
        self,
        num_envs: int,
        max_steps: int,
        goal: float | None = 0.2,
        camera: int = 32,
        instruction: str = INSTRUCTION,
    ):
        self.num_envs, self.max_steps, self.goal = num_envs, max_steps, goal
        self.camera, self.instruction = camera, instruction
        self.position = np.zeros(num_envs)
        self.steps = [0] * num_envs
        self.done = [False] * num_envs
        self.succeeded = [False] * num_envs

    def _obs(self, i: int) -> dict:
        shade = np.uint8(int(100 + 50 * np.tanh(self.position[i])))
        image = np.full((self.camera, self.camera, 3), shade, dtype=np.uint8)
        image[: 4 + i, :4] = 255
        return {
            "state.eef_pos": np.array([self.position[i], 0, 0], np.float32),
            "state.eef_axis_angle": np.zeros(3, np.float32),
            "state.gripper_qpos": np.zeros(2, np.float32),
            libero.LANGUAGE_KEY: self.instruction,
            "video.image": image,
            "video.wrist_image": image[::-1].copy(),
        }

    def reset(self) -> list[dict]:
        """Every environment back to x = 0 -> one observation per environment."""
        self.position[:] = 0
        self.steps = [0] * self.num_envs
        self.done = [False] * self.num_envs
        self.succeeded = [False] * self.num_envs
        return [self._obs(i) for i in range(self.num_envs)]

    def step(
        self, chunks: dict[int, np.ndarray], record: frozenset[int] = frozenset()
    ) -> dict[int, ChunkResult]:
        """{env index: actions [k, 7]} -> {env index: ChunkResult}; `record`: envs whose frames to keep."""
        results = {}
        for i, actions in chunks.items():
            reward, frames = 0.0, []
            for action in actions:
                if self.done[i]:
                    break
                self.position[i] += action[0]
                self.steps[i] += 1
                if self.goal is not None and self.position[i] > self.goal and not self.succeeded[i]:
                    reward, self.succeeded[i] = 1.0, True
                self.done[i] = self.succeeded[i] or self.steps[i] >= self.max_steps
                if i in record:
                    obs = self._obs(i)
                    frames.append(np.concatenate([obs["video.image"], obs["video.wrist_image"]], 1))
            results[i] = ChunkResult(
                self._obs(i), reward, bool(self.done[i]), bool(self.succeeded[i]), self.steps[i], frames
            )
        return results


def synthetic_libero_metadata(camera: int) -> DatasetMetadata:
    """`libero_panda` statistics (+-1 bounds) and modalities for `camera` x `camera` frames."""

    def stats(dim: int) -> dict[str, list[float]]:
        bounds = {"min": [-1.0] * dim, "max": [1.0] * dim, "q01": [-1.0] * dim, "q99": [1.0] * dim}
        return {"mean": [0.0] * dim, "std": [1.0] * dim, **bounds}

    modalities = {
        "video": {
            key: {"resolution": [camera, camera], "channels": 3, "fps": libero.CONTROL_FPS}
            for key in libero.VIDEO_KEYS
        },
        "state": {
            key: {
                "absolute": True,
                "rotation_type": libero.STATE_ROTATIONS.get(key),
                "shape": [dim],
                "continuous": True,
            }
            for key, dim in libero.STATE_DIMS.items()
        },
        "action": {
            key: {"absolute": False, "rotation_type": None, "shape": [dim], "continuous": True}
            for key, dim in libero.ACTION_DIMS.items()
        },
    }
    statistics = {
        "state": {key: stats(dim) for key, dim in libero.STATE_DIMS.items()},
        "action": {key: stats(dim) for key, dim in libero.ACTION_DIMS.items()},
    }
    return DatasetMetadata(statistics, modalities, "new_embodiment")
