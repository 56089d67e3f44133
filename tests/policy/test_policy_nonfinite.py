"""A NaN is stopped at the first boundary it reaches, with an error naming where: a dataset (validate and
fine-tune refuse it), a checkpoint (saving and loading refuse it), a policy's action (get_action refuses
it) and the server (an error reply instead of the action, and the server keeps serving).
Training's own check is in tests/train/test_train_nonfinite.py."""

from __future__ import annotations

import shutil
import threading

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from policy_helpers import observation_of
from safetensors.torch import load_file, save_file

from groot.cli import main
from groot.data.synthetic import make_synthetic_dataset
from groot.errors import CheckpointError, DatasetError, NonFiniteError, ObservationError
from groot.model.gr00t_n15 import GR00TN15
from groot.policy import Policy
from groot.serve.client import InferenceClient, ServerError
from groot.serve.server import InferenceServer
from groot.train.finetune import FinetuneConfig, finetune

NAN_WEIGHT = "action_head.model.proj_out_2.weight"


@pytest.fixture
def nan_dataset(tmp_path):
    """A LIBERO-layout synthetic dataset with one NaN in `observation.state` (episode 1, row 4, dim 2)."""
    root = make_synthetic_dataset(tmp_path / "nan_dataset", num_episodes=2, episode_length=10,
                                  cameras=("image", "wrist_image"), image_size=32,
                                  state_dims={"eef_pos": 3, "eef_axis_angle": 3, "gripper_qpos": 2},
                                  action_dims={"eef_delta_pos": 3, "eef_delta_rot": 3, "gripper": 1},
                                  state_rotations={"eef_axis_angle": "axis_angle"})
    path = root / "data/chunk-000/episode_000001.parquet"
    table = pq.read_table(path)
    state = np.stack(table.column("observation.state").to_pylist()).astype(np.float32)
    state[4, 2] = np.nan
    column = pa.FixedSizeListArray.from_arrays(pa.array(state.reshape(-1)), state.shape[1])
    pq.write_table(table.set_column(table.column_names.index("observation.state"), "observation.state",
                                    column), path)
    return root


def test_validate_refuses_a_nan_in_the_data(nan_dataset, capsys):
    assert main(["data", "validate", str(nan_dataset)]) == 2
    assert ("data/chunk-000/episode_000001.parquet: key 'observation.state': expected finite numbers, "
            "found nan in episode 1, row 4, dim 2") in capsys.readouterr().err


def test_finetune_refuses_a_nan_in_the_data_before_training(nan_dataset, tmp_path):
    cfg = FinetuneConfig(dataset_path=[str(nan_dataset)], output_dir=str(tmp_path / "run"),
                         data_config="libero_panda", base_model="tiny", batch_size=2, max_steps=2,
                         dataloader_num_workers=0)
    with pytest.raises(DatasetError, match=r"'observation.state': expected finite numbers, found nan"):
        finetune(cfg)
    assert not list((tmp_path / "run").glob("checkpoint-*"))


def test_saving_a_nan_weight_is_refused(tiny_setup, tmp_path):
    model = GR00TN15.from_pretrained(tiny_setup.checkpoint)
    with torch.no_grad():
        model.get_parameter(NAN_WEIGHT)[0, 0] = float("nan")
    with pytest.raises(CheckpointError, match=rf"'{NAN_WEIGHT}': expected finite weights, found 1 NaN"):
        model.save_pretrained(tmp_path / "nan_checkpoint")
    assert not (tmp_path / "nan_checkpoint").exists()


def test_loading_a_nan_weight_is_refused_naming_it(tiny_setup, tmp_path):
    root = shutil.copytree(tiny_setup.checkpoint, tmp_path / "nan_checkpoint")
    weights = load_file(str(root / "model.safetensors"))
    weights[NAN_WEIGHT][1, 2] = float("nan")
    save_file(weights, str(root / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(CheckpointError) as error:
        Policy.from_pretrained(root, tiny_setup.tag, device="cpu")
    assert str(error.value) == (f"{root / 'model.safetensors'}: tensor '{NAN_WEIGHT}': expected finite "
                                f"weights, found 1 NaN / inf of {weights[NAN_WEIGHT].numel()} values")


@pytest.fixture(scope="module")
def nan_policy(tiny_setup):
    """A policy whose model emits NaN actions (a weight turned NaN after loading)."""
    policy = Policy.from_pretrained(tiny_setup.checkpoint, tiny_setup.tag, device="cpu")
    with torch.no_grad():
        policy.model.get_parameter(NAN_WEIGHT)[0, 0] = float("nan")
    return policy


def test_policy_refuses_to_return_a_nan_action(nan_policy, raw_dataset):
    with pytest.raises(NonFiniteError, match=r"^action\.arm: expected finite actions, found nan at index "):
        nan_policy.get_action(observation_of(raw_dataset.raw_step(0, 3)))


def test_policy_still_refuses_a_nan_observation_naming_the_key(nan_policy, raw_dataset):
    obs = observation_of(raw_dataset.raw_step(0, 3))
    obs["state.gripper"] = np.full_like(obs["state.gripper"], np.nan)
    with pytest.raises(ObservationError, match=r"^state\.gripper: expected finite values, found nan"):
        nan_policy.get_action(obs)


class NanPolicy:
    """A stand-in that is not a groot Policy and answers NaN: the server's own check catches it."""

    def get_action(self, observation):
        return {"action.arm": np.full((16, 3), np.nan, np.float32), "action.gripper": np.zeros((16, 1))}

    def get_modality_config(self):
        return {}


@pytest.mark.parametrize("policy_kind", ["groot policy", "stand-in"])
def test_server_answers_an_error_instead_of_a_nan_action(policy_kind, nan_policy, raw_dataset):
    policy = nan_policy if policy_kind == "groot policy" else NanPolicy()
    server = InferenceServer(policy, port=0, poll_interval_ms=20)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        with InferenceClient("127.0.0.1", server.port, timeout_ms=60_000) as client:
            with pytest.raises(ServerError, match=r"get_action: action\.arm: expected finite actions, found"):
                client.get_action(observation_of(raw_dataset.raw_step(0, 3)))
            assert client.ping()  # still serving
    finally:
        server.stop()
        thread.join(timeout=5)
        server.close()
