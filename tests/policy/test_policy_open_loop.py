import json
import threading

import numpy as np
import pytest

from groot.cli import main
from groot.data.dataset import GrootDataset
from groot.eval.open_loop import evaluate_trajectory, raw_data_config
from groot.policy import Policy
from groot.serve.server import InferenceServer

ACTION_KEYS = ["action.arm", "action.gripper"]


class ReplayPolicy:
    """Answers with the recorded actions of the step it was shown, plus `offset`."""

    def __init__(self, offset: float):
        self.offset = offset
        self.shown: dict = {}

    def get_action(self, observation):
        return {key: self.shown[key] + self.offset for key in ACTION_KEYS}


@pytest.mark.parametrize("offset, horizon", [(0.0, 16), (0.5, 16), (-2.0, 5)])
def test_metrics_align_chunks_with_recorded_steps(tiny_setup, offset, horizon):
    dataset = GrootDataset(tiny_setup.dataset, tiny_setup.data_config, tiny_setup.tag, transform=False)
    policy = ReplayPolicy(offset)

    def raw_step(s):
        step = dataset.raw_step(0, s)
        policy.shown = step
        return step

    observation_keys = ["video.front", "state.arm", "state.gripper", tiny_setup.data_config.language_keys[0]]
    result = evaluate_trajectory(policy, raw_step, 0, 20, observation_keys, ACTION_KEYS, steps=30,
                                 action_horizon=horizon)
    assert result.steps == 20 and result.inference_steps == list(range(0, 20, horizon))
    np.testing.assert_allclose(result.mse, offset**2, atol=1e-9)
    np.testing.assert_allclose(result.mae, abs(offset), atol=1e-6)
    assert set(result.mse_per_key) == set(ACTION_KEYS)
    assert result.state is not None and result.ground_truth.shape == result.prediction.shape == (20, 7)


def test_raw_data_config_follows_the_policy(tiny_setup):
    modality = tiny_setup.data_config.modality_config()
    assert raw_data_config(modality).modality_config() == modality


def test_open_loop_cli_with_a_local_checkpoint(tiny_setup, tmp_path):
    out = tmp_path / "eval"
    code = main(["eval", "open-loop", "--model-path", str(tiny_setup.checkpoint), "--dataset-path",
                 str(tiny_setup.dataset), "--embodiment-tag", tiny_setup.tag, "--trajs", "2", "--steps", "12",
                 "--action-horizon", "6", "--device", "cpu", "--out", str(out)])
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    runs = summary["trajectories"]
    assert [r["trajectory"] for r in runs] == [0, 1] and all(r["inference_steps"] == [0, 6] for r in runs)
    assert summary["mean_mse"] == pytest.approx(np.mean([r["mse"] for r in runs]))
    assert all(r["mse"] > 0 and r["mae"] > 0 for r in runs)
    for trajectory in (0, 1):
        png = (out / f"trajectory_{trajectory}.png").read_bytes()
        assert png.startswith(b"\x89PNG") and len(png) > 10_000


def test_open_loop_cli_against_a_server(tiny_setup, tmp_path):
    policy = Policy.from_pretrained(tiny_setup.checkpoint, tiny_setup.tag, device="cpu")
    with InferenceServer(policy, port=0, poll_interval_ms=20) as server:
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            code = main(["eval", "open-loop", "--server", f"127.0.0.1:{server.port}", "--dataset-path",
                         str(tiny_setup.dataset), "--embodiment-tag", tiny_setup.tag, "--steps", "10",
                         "--out", str(tmp_path)])
        finally:
            server.stop()
            thread.join(timeout=10)
    assert code == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["settings"]["server"] == f"127.0.0.1:{server.port}"
    assert summary["trajectories"][0]["steps"] == 10 and (tmp_path / "trajectory_0.png").is_file()
