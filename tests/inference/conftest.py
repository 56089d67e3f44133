"""Shared fixtures: the tiny preset (fp32, CPU) and model samples with raw-resolution frames."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from groot.model.gr00t_n15 import GR00TN15
from groot.model.processor import GrootProcessor

RAW_SIZE = 64  # raw camera frames; the tiny preset's model size is 56


@pytest.fixture(scope="module")
def tiny_model() -> GR00TN15:
    torch.manual_seed(0)
    return GR00TN15.from_preset("tiny").eval()


@pytest.fixture(scope="module")
def tiny_processor(tiny_model) -> GrootProcessor:
    return GrootProcessor.for_config(tiny_model.config)


def make_sample(rng: np.random.Generator, language: str, num_images: int = 1, embodiment_id: int = 3,
                raw_size: int = RAW_SIZE) -> dict:
    return {"images": rng.integers(0, 256, (num_images, raw_size, raw_size, 3), dtype=np.uint8),
            "language": language,
            "state": rng.standard_normal((1, 64)).astype(np.float32),
            "embodiment_id": embodiment_id}
