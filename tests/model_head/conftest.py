"""Shared fixtures for the model tests: a processor-shaped batch for any preset."""

from __future__ import annotations

import pytest

from groot.model.synthetic_batch import synthetic_batch


@pytest.fixture
def batch_factory():
    return synthetic_batch
