"""Policy: raw robot observation -> per-key action chunks in original units (spec 8).

    policy = Policy.from_pretrained("ckpt/", "new_embodiment")
    action = policy.get_action({"video.front": uint8 [1, H, W, 3], "state.arm": [1, 7],
                                "annotation.human.task_description": ["pick the cube"]})
    action["action.arm"]  # float32 [16, 7]

An observation is batched iff every `state.*` array has ndim >= 3 (video [B, T, H, W, 3], state
[B, T, D], language a list of B strings); the outputs then carry the batch dim too ([B, 16, D]).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from groot.errors import ObservationError


@dataclass(frozen=True)
class ObservationSpec:
    """What a policy accepts, per full key: video (T, H, W), state (T, D), language keys."""

    video: dict[str, tuple[int, int, int]]
    state: dict[str, tuple[int, int]]
    language: tuple[str, ...]

    @property
    def keys(self) -> list[str]:
        return [*self.video, *self.state, *self.language]

    def check(self, observation: Any) -> tuple[dict[str, Any], bool]:
        """Validate `observation` and give it a leading batch dim.

        -> ({"video.<k>": uint8 [B, T, H, W, 3], "state.<k>": float32 [B, T, D], <language key>:
        list of B str}, batched). Raises ObservationError naming the key, expected and found."""
        if not isinstance(observation, Mapping):
            raise ObservationError(f"observation: expected a dict of {', '.join(self.keys)}, "
                                   f"found {type(observation).__name__}")
        missing = [key for key in self.keys if key not in observation]
        if missing:
            raise ObservationError(f"observation is missing {', '.join(missing)}; expected keys: "
                                   f"{', '.join(self.keys)}; found: {', '.join(map(str, observation))}")
        arrays = {key: np.asarray(observation[key]) for key in [*self.video, *self.state]}
        batched = self._is_batched(arrays)
        checked: dict[str, Any] = {}
        for key, (steps, height, width) in self.video.items():
            checked[key] = _check_video(key, arrays[key], steps, height, width, batched)
        for key, (steps, dim) in self.state.items():
            checked[key] = _check_state(key, arrays[key], steps, dim, batched)
        for key in self.language:
            checked[key] = _check_language(key, observation[key], batched)
        _check_batch_sizes(checked)
        return checked, batched

    def _is_batched(self, arrays: dict[str, np.ndarray]) -> bool:
        """Batched iff every state array has ndim >= 3 (video ndim 5 when there is no state)."""
        keys, batched_ndim = (list(self.state), 3) if self.state else (list(self.video), 5)
        flags = {key: arrays[key].ndim >= batched_ndim for key in keys}
        if len(set(flags.values())) > 1:
            shapes = ", ".join(f"{key} {arrays[key].shape}" for key in keys)
            raise ObservationError(f"observation mixes batched and unbatched arrays: {shapes}; expected all "
                                   f"state arrays [T, D] (unbatched) or all [B, T, D] (batched)")
        return all(flags.values())


def _check_video(key: str, frames: np.ndarray, steps: int, height: int, width: int,
                 batched: bool) -> np.ndarray:
    expected = f"{'[B, ' if batched else '['}{steps}, {height}, {width}, 3]"
    if frames.dtype != np.uint8:
        raise ObservationError(f"{key}: expected dtype uint8 (RGB frames), found {frames.dtype}")
    if frames.ndim != (5 if batched else 4) or frames.shape[-4:] != (steps, height, width, 3):
        raise ObservationError(f"{key}: expected shape {expected} ({steps} frame(s) of the "
                               f"{width}x{height} training resolution), found {list(frames.shape)}")
    return frames if batched else frames[None]


def _check_state(key: str, values: np.ndarray, steps: int, dim: int, batched: bool) -> np.ndarray:
    expected = f"{'[B, ' if batched else '['}{steps}, {dim}]"
    if values.dtype.kind not in "biuf":
        raise ObservationError(f"{key}: expected a numeric array, found dtype {values.dtype}")
    if values.ndim != (3 if batched else 2) or values.shape[-2:] != (steps, dim):
        raise ObservationError(f"{key}: expected shape {expected}, found {list(values.shape)}")
    values = values.astype(np.float32)
    if not np.isfinite(values).all():
        bad = np.argwhere(~np.isfinite(values))[0].tolist()
        raise ObservationError(f"{key}: expected finite values, found {values[tuple(bad)]} at index {bad}")
    return values if batched else values[None]


def _check_language(key: str, value: Any, batched: bool) -> list[str]:
    """str | [str] (unbatched) or B strings (batched: a list, or an array [B] / [B, 1]) -> list of str."""
    texts = _as_texts(value)
    if texts is None or not texts or not all(isinstance(t, str) for t in texts) or (
            not batched and len(texts) != 1):
        expected = "a list of B strings" if batched else "a string or a list of 1 string"
        found = repr(value) if len(repr(value)) <= 80 else f"{type(value).__name__} {repr(value)[:80]}..."
        raise ObservationError(f"{key}: expected {expected}, found {found}")
    return texts


def _as_texts(value: Any) -> list | None:
    if isinstance(value, str):
        return [value]
    if isinstance(value, np.ndarray):
        column = value.ndim == 1 or (value.ndim == 2 and value.shape[1] == 1)
        return value.reshape(-1).tolist() if value.dtype.kind == "U" and column else None
    if isinstance(value, (list, tuple)):  # [B] or [B, 1]
        return [t[0] if isinstance(t, (list, tuple)) and len(t) == 1 else t for t in value]
    return None


def _check_batch_sizes(checked: dict[str, Any]) -> None:
    sizes = {key: len(value) for key, value in checked.items()}
    if len(set(sizes.values())) > 1:
        listed = ", ".join(f"{key}: {size}" for key, size in sizes.items())
        raise ObservationError(f"observation keys disagree on the batch size: {listed}")
