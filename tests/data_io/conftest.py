"""Small synthetic datasets shared by the data I/O tests (written once per session)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from groot.data.synthetic import make_synthetic_dataset, make_synthetic_episodes

NUM_EPISODES, LENGTH, CAMERAS, SIZE = 5, 12, ("front", "wrist"), (33, 46)


@pytest.fixture(scope="session")
def layout():
    """Sizes of the session datasets."""
    return SimpleNamespace(num_episodes=NUM_EPISODES, length=LENGTH, cameras=CAMERAS, size=SIZE)


@pytest.fixture(scope="session")
def originals():
    """The episodes the session datasets were written from."""
    return make_synthetic_episodes(NUM_EPISODES, LENGTH, CAMERAS, SIZE)


@pytest.fixture(scope="session", params=["v2.1", "v3.0"])
def dataset_root(request, tmp_path_factory):
    """A dataset of each layout; v3.0 packs 2 episodes per file so addressing across files is exercised."""
    root = tmp_path_factory.mktemp("datasets") / request.param
    return make_synthetic_dataset(root, NUM_EPISODES, LENGTH, CAMERAS, SIZE, version=request.param,
                                  episodes_per_file=2)
