"""Model samples with raw-resolution camera frames for the inference tests, and the eager reference."""

from __future__ import annotations

import numpy as np
import torch

from groot.data import image_ops

RAW_SIZE = 64  # raw camera frames; the tiny preset's model size is 56


def make_sample(rng: np.random.Generator, language: str, num_images: int = 1, embodiment_id: int = 3,
                raw_size: int | tuple[int, int] = RAW_SIZE, state_dim: int = 64) -> dict:
    height, width = (raw_size, raw_size) if isinstance(raw_size, int) else raw_size
    return {"images": rng.integers(0, 256, (num_images, height, width, 3), dtype=np.uint8),
            "language": language,
            "state": rng.standard_normal((1, state_dim)).astype(np.float32),
            "embodiment_id": embodiment_id}


def eager_actions(model, processor, samples, noise):
    """The reference: CPU transform (centre crop + resize), processor, GR00TN15.get_action."""
    size = processor.image_size
    transformed = [dict(s, images=image_ops.crop_resize(torch.from_numpy(s["images"]), 0.95, size).numpy())
                   for s in samples]
    return model.get_action(processor(transformed), noise=noise)["action_pred"]
