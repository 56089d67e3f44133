from __future__ import annotations

import json

import numpy as np
import pytest

from groot.sim import libero

pytestmark = [pytest.mark.sim, pytest.mark.skipif(not libero.libero_available(),
                                                  reason="LIBERO not installed (pip install 'groot[sim]')")]


@pytest.mark.slow  # over 30 s on a 2-core CPU (two LIBERO episodes simulated and encoded)
def test_generate_two_demos_makes_a_valid_dataset(tmp_path):
    from groot.data.lerobot import LeRobotDataset
    from groot.sim.generate import format_summary, generate_dataset

    out = tmp_path / "demos"
    summary = generate_dataset("libero_object", out, episodes_per_task=2, tasks=[0], workers=1, image_size=64,
                               noise=0.05, seed=1, progress=False)
    assert summary["episodes"] == 2 and summary["tasks"][0]["successes"] == 2
    assert "expert success" in format_summary(summary)
    assert not (tmp_path / ".demos.episodes").exists()  # scratch folder removed

    dataset = LeRobotDataset(out)
    assert dataset.tasks == {0: "pick up the alphabet soup and place it in the basket"}
    assert set(dataset.modality.state) == set(libero.STATE_DIMS)
    assert dataset.modality.action["eef_delta_rot"].rotation_type == "axis_angle"
    assert dataset.video_resolution("wrist_image") == (64, 64)
    data = dataset.episode_data(1)
    length = dataset.episodes[1].length
    assert data["observation.state"].shape == (length, 8) and data["action"].shape == (length, 7)
    # the expert lifts the object: the gripper closes (+1) at some point and ends open (-1)
    assert set(np.unique(data["action"][:, 6]).tolist()) == {-1.0, 1.0}
    assert np.abs(data["action"][:, :6]).max() <= 1.0
    frames = dataset.decode_frames(1, "image", data["timestamp"][[0, length - 1]])
    assert frames.shape == (2, 64, 64, 3) and frames.dtype == np.uint8
    assert np.abs(frames[0].astype(int) - frames[1].astype(int)).mean() > 1.0  # the scene changed
    assert json.loads((out / "meta" / "info.json").read_text())["robot_type"] == "libero_panda"
