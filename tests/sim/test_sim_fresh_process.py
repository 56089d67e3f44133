"""The CLI's simulator paths run in fresh processes, as a user runs them (not inside pytest, where
torch's compiler machinery is already loaded before any renderer exists)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from groot.sim import libero

pytestmark = [pytest.mark.sim, pytest.mark.slow,
              pytest.mark.skipif(not libero.libero_available(),
                                 reason="LIBERO not installed (pip install 'groot[sim]')")]

TAG = "new_embodiment"


def groot_command(*args: str, cwd) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run([sys.executable, "-m", "groot.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def libero_checkpoint(tmp_path_factory):
    """An untrained tiny checkpoint with the `libero_panda` data config and statistics of a small
    synthetic dataset of the same layout."""
    from groot.data.configs import libero_panda
    from groot.data.dataset import GrootDataset
    from groot.data.synthetic import make_synthetic_dataset
    from groot.model.gr00t_n15 import GR00TN15

    root = tmp_path_factory.mktemp("libero_ckpt")
    dataset = make_synthetic_dataset(root / "dataset", num_episodes=2, episode_length=12,
                                     cameras=libero.VIDEO_KEYS, image_size=64,
                                     state_dims=libero.STATE_DIMS, action_dims=libero.ACTION_DIMS,
                                     state_rotations=libero.STATE_ROTATIONS)
    config = libero_panda()
    metadata = GrootDataset(dataset, config, TAG).metadata
    return GR00TN15.from_preset("tiny").save_pretrained(root / "checkpoint", metadata={TAG: metadata},
                                                        data_config=config)


def test_eval_sim_in_a_fresh_process_finishes_and_writes_its_report(libero_checkpoint, tmp_path):
    out = tmp_path / "eval"
    result = groot_command("eval", "sim", "--suite", "libero_object", "--model-path", str(libero_checkpoint),
                           "--tasks", "0", "--episodes-per-task", "1", "--max-steps", "8", "--video", "none",
                           "--workers", "1", "--device", "cpu", "--image-size", "64", "--out", str(out),
                           cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    report = json.loads((out / "report.json").read_text())
    assert report["tasks"]["0"]["episodes"] == 1 and report["episodes"][0]["steps"] == 8
