"""Shared fixtures: the tiny preset (fp32, CPU) and its processor."""

from __future__ import annotations

import pytest
import torch

from groot.model.gr00t_n15 import GR00TN15
from groot.model.processor import GrootProcessor


@pytest.fixture(scope="module")
def tiny_model() -> GR00TN15:
    torch.manual_seed(0)
    return GR00TN15.from_preset("tiny").eval()


@pytest.fixture(scope="module")
def tiny_processor(tiny_model) -> GrootProcessor:
    return GrootProcessor.for_config(tiny_model.config)
