"""An N1.6 `tiny` model through the whole path: `groot finetune` -> Policy (eager and engine) ->
`groot serve`'s N1.6 protocol -> `groot eval open-loop` (local and against the server)."""

import json
import threading

import numpy as np
import pytest
import torch

from groot.cli import main
from groot.data.dataset import GrootDataset
from groot.data.synthetic import make_synthetic_dataset
from groot.model.gr00t_n16 import GR00TN16
from groot.policy import Policy
from groot.serve.client import InferenceClient
from groot.serve.server import InferenceServer

TAG = "new_embodiment"
CAMERA = (36, 48)  # H, W: not square, so the native-aspect geometry shows
STATE = {"eef_pos": 3, "eef_axis_angle": 3, "gripper_qpos": 2}
ACTION = {"eef_delta_pos": 3, "eef_delta_rot": 3, "gripper": 1}


@pytest.fixture(scope="module")
def n16_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("n16")
    dataset = make_synthetic_dataset(root / "data", num_episodes=2, episode_length=24,
                                     cameras=("image", "wrist_image"), image_size=CAMERA, state_dims=STATE,
                                     action_dims=ACTION, state_rotations={"eef_axis_angle": "axis_angle"})
    code = main(["finetune", "--dataset-path", str(dataset), "--data-config", "libero_panda",
                 "--embodiment-tag", TAG, "--base-model", "n1.6-tiny", "--output-dir", str(root / "run"),
                 "--batch-size", "2", "--max-steps", "4", "--save-steps", "4",
                 "--dataloader-num-workers", "0",
                 "--tune-top-llm-layers", "1", "--no-bf16"])
    assert code == 0
    return dataset, root / "run" / "checkpoint-4"


def observation(policy: Policy, dataset, step: int) -> dict:
    """Step `step` of episode 0 as a robot sends it: the policy's keys, raw frames and state."""
    raw = GrootDataset(dataset, policy.data_config, TAG, transform=False).raw_step(0, step)
    return {key: raw[key] for key in policy.observation_spec.keys}


def test_the_checkpoint_is_n16_and_predicts_every_action_key(n16_run):
    dataset, checkpoint = n16_run
    policy = Policy.from_pretrained(checkpoint, TAG, device="cpu", fast=False)
    assert isinstance(policy.model, GR00TN16)
    assert (policy.data_config.image_resize, policy.data_config.embodiment_table) == ("shortest_edge", "n1.6")
    # 36 x 48 -> shortest edge 56: 56 x 75 -> crop 0.95: 53 x 71 -> 56 x 75 -> multiples of 28: 56 x 84
    assert policy.image_tokens == 56 * 84 // 28**2
    obs = observation(policy, dataset, 3)
    first, again = policy.get_action(obs, seed=5), policy.get_action(obs, seed=5)
    assert set(first) == {f"action.{k}" for k in ACTION}
    for key, dim in ACTION.items():
        assert first[f"action.{key}"].shape == (16, dim)  # the data config's horizon, cut from the model's 50
        assert np.isfinite(first[f"action.{key}"]).all()
        np.testing.assert_array_equal(first[f"action.{key}"], again[f"action.{key}"])


def test_the_engine_in_exact_mode_gives_the_eager_actions(n16_run):
    dataset, checkpoint = n16_run
    eager = Policy.from_pretrained(checkpoint, TAG, device="cpu", fast=False)
    engine = Policy.from_pretrained(checkpoint, TAG, device="cpu", fast=True, exact=True)
    assert engine.engine is not None
    steps = [observation(eager, dataset, s) for s in (0, 7)]
    batch = {key: np.stack([s[key] for s in steps]) for key in eager.observation_spec.video}
    batch |= {key: np.stack([s[key] for s in steps]) for key in eager.observation_spec.state}
    batch |= {key: [s[key][0] for s in steps] for key in eager.observation_spec.language}
    head = eager.model.action_head.cfg
    noise = torch.randn(2, head.action_horizon, head.action_dim, generator=torch.Generator().manual_seed(0))
    samples, _ = eager.model_samples(batch)
    want = eager.model.get_action(eager.processor(samples), noise=noise)["action_pred"]
    got = engine.engine.predict(engine.model_samples(batch)[0], noise=noise)
    torch.testing.assert_close(got, want, rtol=0, atol=0)


def test_serve_speaks_n16_and_open_loop_eval_runs_against_it(n16_run, tmp_path):
    dataset, checkpoint = n16_run
    policy = Policy.from_pretrained(checkpoint, TAG, device="cpu")
    with InferenceServer(policy, port=0, poll_interval_ms=20, protocol="n1.6") as server:
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            with InferenceClient("127.0.0.1", server.port, timeout_ms=30_000, protocol="n1.6") as client:
                answer = client.get_action(observation(policy, dataset, 0))
                assert {k: v.shape for k, v in answer.items()} == {f"action.{k}": (16, d)
                                                                   for k, d in ACTION.items()}
            code = main(["eval", "open-loop", "--server", f"127.0.0.1:{server.port}", "--protocol", "n1.6",
                         "--dataset-path", str(dataset), "--embodiment-tag", TAG, "--steps", "16",
                         "--action-horizon", "8", "--out", str(tmp_path / "remote")])
        finally:
            server.stop()
            thread.join(timeout=10)
    assert code == 0
    remote = json.loads((tmp_path / "remote" / "summary.json").read_text())
    assert remote["trajectories"][0]["inference_steps"] == [0, 8]
    code = main(["eval", "open-loop", "--model-path", str(checkpoint), "--dataset-path", str(dataset),
                 "--embodiment-tag", TAG, "--steps", "16", "--action-horizon", "8", "--device", "cpu",
                 "--out", str(tmp_path / "local")])
    assert code == 0
    local = json.loads((tmp_path / "local" / "summary.json").read_text())
    assert np.isfinite(local["mean_mse"]) and local["mean_mse"] > 0
    assert (tmp_path / "local" / "trajectory_0.png").is_file()
