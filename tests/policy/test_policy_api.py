import json
import shutil
import threading

import numpy as np
import pytest
import torch
from policy_helpers import observation_of

from groot.data.writer import TASK_COLUMN
from groot.errors import CheckpointError, ObservationError
from groot.policy import Policy
from groot.serve.client import InferenceClient, ServerError
from groot.serve.server import InferenceServer


@pytest.fixture(scope="module")
def policy(tiny_setup):
    return Policy.from_pretrained(tiny_setup.checkpoint, tiny_setup.tag, device="cpu")



def test_keys_shapes_and_dtypes(policy, raw_dataset):
    obs = observation_of(raw_dataset.raw_step(0, 3))
    action = policy.get_action(obs)
    assert set(action) == {"action.arm", "action.gripper"}
    assert action["action.arm"].shape == (16, 6) and action["action.gripper"].shape == (16, 1)
    assert all(a.dtype == np.float32 and np.isfinite(a).all() for a in action.values())

    batched = {key: np.stack([value, value]) for key, value in obs.items() if key != TASK_COLUMN}
    batched[TASK_COLUMN] = obs[TASK_COLUMN] * 2
    action = policy.get_action(batched)
    assert action["action.arm"].shape == (2, 16, 6) and action["action.gripper"].shape == (2, 16, 1)


def test_actions_come_back_in_original_units(policy, raw_dataset):
    """Same noise: the policy's output equals the model's normalized chunk mapped back with the min-max
    inverse of the checkpoint's statistics."""
    obs = observation_of(raw_dataset.raw_step(1, 5))
    torch.manual_seed(123)
    action = policy.get_action(obs)

    sample = policy.transform.apply({**{k: np.asarray(v) for k, v in obs.items() if k != TASK_COLUMN},
                                     TASK_COLUMN: obs[TASK_COLUMN]})
    torch.manual_seed(123)
    normalized = policy.model.get_action(policy.processor([sample]))["action_pred"][0].numpy()  # [16, 32]
    stats = raw_dataset.metadata.statistics["action"]
    low, high = np.array(stats["arm"]["min"]), np.array(stats["arm"]["max"])
    expected_arm = (normalized[:, :6] + 1) / 2 * (high - low) + low
    np.testing.assert_allclose(action["action.arm"], expected_arm, rtol=1e-5, atol=1e-5)
    low, high = np.array(stats["gripper"]["min"]), np.array(stats["gripper"]["max"])
    np.testing.assert_allclose(action["action.gripper"], (normalized[:, 6:7] + 1) / 2 * (high - low) + low,
                               rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("change, match", [
    (lambda o: o.update({"video.front": np.zeros((1, 64, 64, 3), np.uint8)}),
     r"video\.front: expected shape \[1, {h}, {w}, 3\]"),
    (lambda o: o.update({"state.arm": np.zeros((1, 7), np.float32)}), r"state\.arm: expected shape \[1, 6\]"),
    (lambda o: o.update({"state.gripper": np.full((1, 1), np.inf)}), r"state\.gripper: expected finite"),
    (lambda o: o.pop(TASK_COLUMN), rf"missing {TASK_COLUMN}"),
    (lambda o: o.update({"state.arm": np.zeros((1, 1, 6), np.float32)}), "mixes batched and unbatched"),
])
def test_observation_errors_name_key_expected_and_found(policy, raw_dataset, tiny_setup, change, match):
    obs = observation_of(raw_dataset.raw_step(0, 0))
    change(obs)
    height, width = tiny_setup.image_hw
    with pytest.raises(ObservationError, match=match.format(h=height, w=width)):
        policy.get_action(obs)


def test_modality_config_and_denoising_steps(policy, raw_dataset, tiny_setup):
    assert policy.get_modality_config() == tiny_setup.data_config.modality_config()
    assert policy.video_delta_indices == [0] and policy.state_delta_indices == [0]
    obs = observation_of(raw_dataset.raw_step(0, 4))

    def arm_action(steps):
        policy.denoising_steps = steps
        torch.manual_seed(7)
        return policy.get_action(obs)["action.arm"]

    try:
        np.testing.assert_array_equal(arm_action(1), arm_action(1))
        assert not np.allclose(arm_action(1), arm_action(4))
    finally:
        policy.denoising_steps = None


def test_checkpoint_problems_are_named(tiny_setup, tmp_path):
    with pytest.raises(CheckpointError, match=f"embodiment tag 'gr1', found {tiny_setup.tag}"):
        Policy.from_pretrained(tiny_setup.checkpoint, "gr1", device="cpu")
    copy = shutil.copytree(tiny_setup.checkpoint, tmp_path / "ckpt")
    (copy / "experiment_cfg" / "data_config.json").unlink()
    with pytest.raises(CheckpointError, match="--data-config"):
        Policy.from_pretrained(copy, tiny_setup.tag, device="cpu")
    by_object = Policy.from_pretrained(copy, tiny_setup.tag, data_config=tiny_setup.data_config, device="cpu")
    assert by_object.data_config == tiny_setup.data_config
    metadata = json.loads((copy / "experiment_cfg" / "metadata.json").read_text())
    assert by_object.metadata.to_dict() == metadata[tiny_setup.tag]


def test_real_policy_behind_the_server(policy, raw_dataset):
    with InferenceServer(policy, port=0, poll_interval_ms=20) as server:
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        with InferenceClient("127.0.0.1", server.port, timeout_ms=20_000) as client:
            config = client.get_modality_config()
            assert config == policy.get_modality_config()
            action = client.get_action(observation_of(raw_dataset.raw_step(0, 2)))
            assert action["action.arm"].shape == (16, 6) and action["action.arm"].dtype == np.float32
            with pytest.raises(ServerError, match=r"state\.arm: expected shape"):
                client.get_action({**observation_of(raw_dataset.raw_step(0, 2)),
                                   "state.arm": np.zeros((1, 2), np.float32)})
            client.kill_server()
        thread.join(timeout=10)
        assert not thread.is_alive()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_policy_runs_in_bf16(tiny_setup, raw_dataset):
    policy = Policy.from_pretrained(tiny_setup.checkpoint, tiny_setup.tag, device="cuda")
    assert next(policy.model.parameters()).dtype == torch.bfloat16
    action = policy.get_action(observation_of(raw_dataset.raw_step(0, 1)))
    assert action["action.arm"].shape == (16, 6) and action["action.arm"].dtype == np.float32
    assert np.isfinite(action["action.arm"]).all()
