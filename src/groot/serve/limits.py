"""Request limits of the inference server, checked on the decoded request before the policy runs.

Light on purpose (numpy only). Each check costs time proportional to the number of keys and strings,
never to the array contents, and a violation raises `LimitError` naming the key, the limit and its
`groot serve` flag. The prompt's token count needs the model's tokenizer, so `Policy` checks it
(`max_prompt_tokens`); the message size is enforced by ZeroMQ before the request is read.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from groot.errors import GrootError

# Qwen3's positions (max_position_embeddings): the default token limit of a Policy, used for characters
MODEL_POSITIONS = 40_960


class LimitError(GrootError, ValueError):
    """A request over one of the server's limits."""


@dataclass(frozen=True)
class RequestLimits:
    """Most a single get_action request may ask for (each one a `groot serve` flag).

    max_prompt_chars: characters of any one string (`--max-prompt-chars`);
    max_batch_size: samples in one batched request (`--max-batch-size`);
    max_frames: video frames over all `video.*` keys, batch and time steps (`--max-frames`);
    max_image_size: height or width of one frame in pixels (`--max-image-size`).
    """

    max_prompt_chars: int = MODEL_POSITIONS
    max_batch_size: int = 32
    max_frames: int = 256
    max_image_size: int = 4096

    def __post_init__(self) -> None:
        for name in ("max_prompt_chars", "max_batch_size", "max_frames", "max_image_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise LimitError(f"{name}: expected a positive integer, found {value!r}")

    def check(self, data: Mapping[str, Any]) -> None:
        """Raise LimitError for the first key of `data` (an observation) over a limit."""
        frames = 0
        for key, value in data.items():
            self._check_texts(key, value)
            batch = _batch_size(key, value)
            if batch > self.max_batch_size:
                raise LimitError(f"{key}: batch of {batch} samples, over the limit of {self.max_batch_size} "
                                 "(groot serve --max-batch-size)")
            if key.startswith("video.") and isinstance(value, np.ndarray) and value.ndim >= 3:
                height, width = value.shape[-3:-1]
                if max(height, width) > self.max_image_size:
                    raise LimitError(f"{key}: frames of {height}x{width} pixels, over the limit of "
                                     f"{self.max_image_size} pixels a side (groot serve --max-image-size)")
                frames += math.prod(value.shape[:-3])
                if frames > self.max_frames:
                    raise LimitError(f"{key}: brings the request to {frames} video frames, over the limit of "
                                     f"{self.max_frames} (groot serve --max-frames)")

    def _check_texts(self, key: str, value: Any) -> None:
        longest = max((len(text) for text in _texts(value)), default=0)
        if longest > self.max_prompt_chars:
            raise LimitError(f"{key}: a prompt of {longest} characters, over the limit of "
                             f"{self.max_prompt_chars} (groot serve --max-prompt-chars)")


def _batch_size(key: str, value: Any) -> int:
    """Leading dim of a batched video [B, T, H, W, C] / state [B, T, D] array, or the number of strings of
    a language list / str array (B when batched); 1 otherwise."""
    if key.startswith(("video.", "state.")):
        batched_ndim = 5 if key.startswith("video.") else 3
        return value.shape[0] if isinstance(value, np.ndarray) and value.ndim >= batched_ndim else 1
    if isinstance(value, np.ndarray):
        return len(value) if value.dtype.kind == "U" and value.ndim >= 1 else 1
    return len(value) if isinstance(value, (list, tuple)) else 1


def _texts(value: Any) -> list[str]:
    """The strings of a language value: str, list / tuple of str or [str], or a str array."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, np.ndarray):
        return value.reshape(-1).tolist() if value.dtype.kind == "U" else []
    if isinstance(value, (list, tuple)):
        items = [item[0] if isinstance(item, (list, tuple)) and len(item) == 1 else item for item in value]
        return [item for item in items if isinstance(item, str)]
    return []
