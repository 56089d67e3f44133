"""Fixtures of the RL tests."""

from __future__ import annotations

from pathlib import Path

import pytest
from rl_helpers import make_tiny_checkpoint


@pytest.fixture(scope="session")
def tiny_libero_checkpoint(tmp_path_factory) -> Path:
    return make_tiny_checkpoint(tmp_path_factory.mktemp("rl"))


@pytest.fixture(scope="session")
def tiny_n16_libero_checkpoint(tmp_path_factory) -> Path:
    return make_tiny_checkpoint(tmp_path_factory.mktemp("rl16"), "n1.6-tiny")
