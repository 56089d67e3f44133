"""Model samples with raw-resolution camera frames for the inference tests."""

from __future__ import annotations

import numpy as np

RAW_SIZE = 64  # raw camera frames; the tiny preset's model size is 56


def make_sample(rng: np.random.Generator, language: str, num_images: int = 1, embodiment_id: int = 3,
                raw_size: int = RAW_SIZE) -> dict:
    return {"images": rng.integers(0, 256, (num_images, raw_size, raw_size, 3), dtype=np.uint8),
            "language": language,
            "state": rng.standard_normal((1, 64)).astype(np.float32),
            "embodiment_id": embodiment_id}
