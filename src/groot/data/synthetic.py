"""Small deterministic LeRobot datasets for tests, benchmarks and demos.

States are smooth random walks, actions are the next state (plus their own walks for keys the state
lacks), and every camera shows a coloured square sliding left to right over a tinted background, so a
decoded frame's content tells which episode, camera and step it came from.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Literal

import numpy as np

from groot.data.modality import ArraySpec, ModalitySpec
from groot.data.writer import TASK_COLUMN, Episode, write_dataset

TASKS = ("pick up the red cube", "open the top drawer", "push the blue block to the left")


def synthetic_modality(state_dims: Mapping[str, int], action_dims: Mapping[str, int],
                       cameras: Sequence[str],
                       state_rotations: Mapping[str, str] | None = None) -> ModalitySpec:
    """Keys laid out back to back in `observation.state` / `action`, cameras `observation.images.<name>`;
    `state_rotations` ({state key: rotation type}) marks state keys as rotations in modality.json."""
    state_rotations = dict(state_rotations or {})

    def layout(dims: Mapping[str, int], original_key: str,
               rotations: Mapping[str, str]) -> dict[str, ArraySpec]:
        ends = np.cumsum(list(dims.values())).tolist()
        return {key: ArraySpec(start=end - dim, end=end, original_key=original_key,
                               rotation_type=rotations.get(key))
                for (key, dim), end in zip(dims.items(), ends, strict=True)}

    return ModalitySpec(state=layout(state_dims, "observation.state", state_rotations),
                        action=layout(action_dims, "action", {}),
                        video={camera: f"observation.images.{camera}" for camera in cameras},
                        annotation={TASK_COLUMN.removeprefix("annotation."): TASK_COLUMN})


def synthetic_frames(episode: int, camera: int, length: int, height: int, width: int) -> np.ndarray:
    """A square (colour by camera) slides left to right over a background tinted by episode.
    Returns uint8 [T, H, W, 3]."""
    frames = np.empty((length, height, width, 3), dtype=np.uint8)
    frames[:] = np.array([40 + 50 * (episode % 4), 60, 90 + 40 * (camera % 3)], dtype=np.uint8)
    side = max(2, min(height, width) // 3)
    colour = np.array([[230, 40, 40], [40, 220, 60], [50, 80, 240]][camera % 3], dtype=np.uint8)
    top = (height - side) * (episode % 3) // 2
    for step in range(length):
        left = (width - side) * step // max(1, length - 1)
        frames[step, top:top + side, left:left + side] = colour
    return frames


def _smooth_walk(rng: np.random.Generator, length: int, dim: int) -> np.ndarray:
    """Position driven by a damped random velocity: smooth, bounded-ish curves. [T, D] float32"""
    velocity = np.zeros(dim)
    position = rng.uniform(-0.5, 0.5, dim)
    out = np.empty((length, dim), dtype=np.float32)
    for step in range(length):
        velocity = 0.8 * velocity + 0.05 * rng.standard_normal(dim)
        position = position + velocity
        out[step] = position
    return out


def make_synthetic_episodes(num_episodes: int = 4, episode_length: int = 20,
                            cameras: Sequence[str] = ("front",), image_size: int | tuple[int, int] = 64,
                            state_dims: Mapping[str, int] | None = None,
                            action_dims: Mapping[str, int] | None = None, seed: int = 0) -> list[Episode]:
    """Deterministic episodes for `seed`. Action keys that are also state keys (same dim) are the next
    state; the others are their own smooth walks."""
    state_dims = dict(state_dims or {"arm": 6, "gripper": 1})
    action_dims = dict(action_dims or state_dims)
    height, width = (image_size, image_size) if isinstance(image_size, int) else image_size
    rng = np.random.default_rng(seed)
    episodes = []
    for number in range(num_episodes):
        walks = {key: _smooth_walk(rng, episode_length + 1, dim) for key, dim in state_dims.items()}
        state = {key: walk[:-1] for key, walk in walks.items()}
        action = {key: walks[key][1:] if state_dims.get(key) == dim
                  else _smooth_walk(rng, episode_length, dim) for key, dim in action_dims.items()}
        video = {camera: synthetic_frames(number, i, episode_length, height, width)
                 for i, camera in enumerate(cameras)}
        episodes.append(Episode(task=TASKS[number % len(TASKS)], state=state, action=action, video=video))
    return episodes


def make_synthetic_dataset(root: str | Path, num_episodes: int = 4, episode_length: int = 20,
                           cameras: Sequence[str] = ("front",), image_size: int | tuple[int, int] = 64,
                           state_dims: Mapping[str, int] | None = None,
                           action_dims: Mapping[str, int] | None = None,
                           version: Literal["v2.1", "v3.0"] = "v2.1", fps: float = 10, seed: int = 0,
                           episodes_per_file: int = 100,
                           state_rotations: Mapping[str, str] | None = None) -> Path:
    """Write a synthetic dataset at `root` (state {"arm": 6, "gripper": 1} and actions of the same keys
    unless given; `state_rotations` as in `synthetic_modality`) and return its path."""
    state_dims = dict(state_dims or {"arm": 6, "gripper": 1})
    action_dims = dict(action_dims or state_dims)
    episodes = make_synthetic_episodes(num_episodes, episode_length, cameras, image_size, state_dims,
                                       action_dims, seed)
    modality = synthetic_modality(state_dims, action_dims, cameras, state_rotations)
    return write_dataset(root, episodes, modality, fps, version=version, robot_type="synthetic",
                         episodes_per_file=episodes_per_file)
