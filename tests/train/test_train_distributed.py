"""Multi-process fine-tuning on the CPU: `--num-gpus 2` relaunches under torchrun, 2 gloo processes."""

import os
import shutil

import pytest
import torch
from train_helpers import assert_policy_acts, observation

from groot.data.configs import get_data_config
from groot.model.gr00t_n15 import GR00TN15
from groot.train.checkpointing import STATE_DIR, load_optimizer_state, load_trainer_state
from groot.train.finetune import FinetuneConfig, finetune
from groot.train.logging import read_metrics

VISION = "backbone.eagle_model.vision_model."
LLM = "backbone.eagle_model.language_model."


@pytest.fixture
def two_processes(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")  # CPU processes (gloo), also on a GPU machine
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)


def _config(dataset, output_dir, **overrides):
    values = dict(dataset_path=[str(dataset)], output_dir=str(output_dir), data_config="libero_panda",
                  base_model="tiny", batch_size=2, logging_steps=1, dataloader_num_workers=0, num_gpus=2)
    return FinetuneConfig(**{**values, **overrides})


@pytest.mark.slow
def test_two_process_gloo_run_trains_and_saves_once(libero_dataset, tmp_path, two_processes):
    final = finetune(_config(libero_dataset, tmp_path, max_steps=2, save_steps=2))  # DDP
    state = load_trainer_state(final)
    assert state["world_size"] == 2 and state["global_step"] == 2
    assert sorted(os.listdir(final / "training_state")) == [
        "optimizer.json", "optimizer.safetensors", "rng-rank0.json", "rng-rank0.safetensors",
        "rng-rank1.json", "rng-rank1.safetensors", "trainer_state.json"]
    records = read_metrics(tmp_path / "metrics.jsonl")  # rank 0 only: one record per step
    assert [r["step"] for r in records] == [1, 2]


@pytest.mark.slow
def test_fsdp_saves_full_model_and_optimizer_and_resumes_exactly(libero_dataset, tmp_path, two_processes):
    """--tune-visual on 2 processes shards with FSDP2: checkpoints hold the gathered (full) weights and
    optimizer state, load as a plain model and a policy, and a resume from them reproduces the run."""
    straight = tmp_path / "straight"
    final = finetune(_config(libero_dataset, straight, tune_visual=True, max_steps=4, save_steps=2))
    assert load_trainer_state(final)["global_step"] == 4

    reference = GR00TN15.from_preset("tiny").state_dict()
    before, after = (GR00TN15.from_pretrained(straight / f"checkpoint-{s}").state_dict() for s in (2, 4))
    assert {k: v.shape for k, v in after.items()} == {k: v.shape for k, v in reference.items()}
    assert any(not torch.equal(before[k], after[k]) for k in after if k.startswith(VISION))  # trained
    assert all(torch.equal(before[k], after[k]) for k in after if k.startswith(LLM))  # frozen
    optimizer = load_optimizer_state(final / STATE_DIR)["state"]
    vision_states = {k: v for k, v in optimizer.items() if k.startswith(VISION)}
    assert vision_states and all(v["exp_avg"].shape == reference[k].shape for k, v in vision_states.items())
    assert_policy_acts(final, observation(libero_dataset, get_data_config("libero_panda")))

    resumed = tmp_path / "resumed"
    resumed.mkdir()
    shutil.copytree(straight / "checkpoint-2", resumed / "checkpoint-2")
    finetune(_config(libero_dataset, resumed, tune_visual=True, max_steps=4, save_steps=2, resume=True))
    expected = {r["step"]: r["loss"] for r in read_metrics(straight / "metrics.jsonl")}
    got = {r["step"]: r["loss"] for r in read_metrics(resumed / "metrics.jsonl")}
    assert sorted(got) == [3, 4]
    assert all(got[step] == pytest.approx(expected[step], abs=1e-5) for step in got), (got, expected)
    resumed_weights = GR00TN15.from_pretrained(resumed / "checkpoint-4").state_dict()
    for name, tensor in after.items():
        torch.testing.assert_close(resumed_weights[name], tensor, atol=1e-6, rtol=1e-5)


@pytest.mark.slow
def test_host_token_table_under_ddp_trains_as_the_table_in_the_model(libero_dataset, tmp_path, two_processes):
    """Each DDP rank looks its prompts up in a host copy of the frozen table: same losses and weights."""
    runs = {}
    for mode in ("on", "off"):
        final = finetune(_config(libero_dataset, tmp_path / mode, max_steps=3, save_steps=3,
                                 host_token_embedding=mode))
        runs[mode] = ([r["loss"] for r in read_metrics(tmp_path / mode / "metrics.jsonl")],
                      GR00TN15.from_pretrained(final).state_dict())
    (host_losses, host_weights), (device_losses, device_weights) = runs["on"], runs["off"]
    assert host_losses == device_losses
    for name, tensor in device_weights.items():
        assert torch.equal(host_weights[name], tensor), name


def test_bf16_trained_weights_under_ddp(libero_dataset, tmp_path, two_processes):
    """bf16 gradients reduce across gloo ranks and the stochastically rounded state saves."""
    final = finetune(_config(libero_dataset, tmp_path, max_steps=2, save_steps=2, trainable_dtype="bf16"))
    assert load_trainer_state(final)["plan"]["trainable_dtype"] == "bf16"
    moments = load_optimizer_state(final / STATE_DIR)["state"]
    dtypes = {t.dtype for state in moments.values() for k, t in state.items() if k != "step"}
    assert dtypes == {torch.bfloat16}
    assert [r["step"] for r in read_metrics(tmp_path / "metrics.jsonl")] == [1, 2]


@pytest.mark.slow
@pytest.mark.parametrize("parallel, tuning", [("ddp", {}), ("fsdp", {"tune_llm": True})])
def test_n16_on_two_processes_resumes_exactly(libero_dataset, tmp_path, two_processes, parallel, tuning):
    """N1.6: DDP with the default tuned parts, FSDP2 with the LLM tuned; a resume from the step-2
    checkpoint reproduces the losses of steps 3 and 4."""
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    final = finetune(_config(libero_dataset, straight, base_model="n1.6-tiny", max_steps=4, save_steps=2,
                             **tuning))
    assert load_trainer_state(final)["plan"]["fsdp"] == (parallel == "fsdp")
    resumed.mkdir()
    shutil.copytree(straight / "checkpoint-2", resumed / "checkpoint-2")
    finetune(_config(libero_dataset, resumed, base_model="n1.6-tiny", max_steps=4, save_steps=2, resume=True,
                     **tuning))
    expected = {r["step"]: r["loss"] for r in read_metrics(straight / "metrics.jsonl")}
    got = {r["step"]: r["loss"] for r in read_metrics(resumed / "metrics.jsonl")}
    assert sorted(got) == [3, 4]
    assert all(got[step] == pytest.approx(expected[step], abs=1e-5) for step in got), (got, expected)
    assert_policy_acts(final, observation(libero_dataset, get_data_config("libero_panda")))
