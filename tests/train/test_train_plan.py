"""`TrainPlan`: the "auto" choices resolved from config, device and world size, logged and saved; the
plan's process-wide settings hold while training runs and are back to their old values afterwards."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch._functorch.config
import torch._inductor.config
from train_helpers import observation

from groot.data.configs import get_data_config
from groot.errors import ConfigError
from groot.train import plan as plan_module
from groot.train import precision, step
from groot.train.checkpointing import load_trainer_state
from groot.train.finetune import FinetuneConfig, finetune
from groot.train.plan import TrainPlan, resolve_plan
from groot.train.prepare import training_settings

CPU, CUDA = torch.device("cpu"), torch.device("cuda", 0)


def _cfg(**overrides) -> FinetuneConfig:
    return FinetuneConfig(dataset_path=["data"], **overrides)


def _plan(cfg: FinetuneConfig, device: torch.device = CPU, world_size: int = 1) -> TrainPlan:
    return resolve_plan(cfg, device, world_size, (31,))


def test_auto_choices_on_one_gpu_and_on_the_cpu():
    gpu = _plan(_cfg(), CUDA)
    assert (gpu.bf16, gpu.tf32, gpu.compile, gpu.cuda_graphs, gpu.host_token_embedding) == (True,) * 5
    assert (gpu.fsdp, gpu.embodiment_slices, gpu.loader_workers, gpu.pin_memory) == (False, True, 8, True)
    cpu = _plan(_cfg(dataloader_num_workers=0))
    assert (cpu.bf16, cpu.tf32, cpu.compile, cpu.cuda_graphs, cpu.host_token_embedding) == (False,) * 5
    assert (cpu.device, cpu.world_size, cpu.embodiment_ids, cpu.pin_memory) == ("cpu", 1, (31,), False)


def test_lora_distributed_and_tuned_backbone_turn_auto_choices_off():
    lora = _plan(_cfg(lora_rank=4), CUDA)
    assert (lora.compile, lora.cuda_graphs, lora.host_token_embedding) == (False, False, True)
    ddp = _plan(_cfg(), CUDA, world_size=2)
    assert (ddp.fsdp, ddp.compile, ddp.cuda_graphs, ddp.embodiment_slices) == (False, False, False, True)
    fsdp = _plan(_cfg(tune_visual=True), CUDA, world_size=2)
    assert (fsdp.fsdp, fsdp.embodiment_slices, fsdp.host_token_embedding) == (True, False, False)
    tuned_llm = _plan(_cfg(tune_llm=True), CUDA)
    assert not tuned_llm.host_token_embedding and not tuned_llm.fsdp  # one process: nothing to shard
    assert _plan(_cfg(compile="off"), CUDA).cuda_graphs is False  # auto graphs follow compile
    assert _plan(_cfg(compile="off", cuda_graphs="on"), CUDA).cuda_graphs is True


@pytest.mark.parametrize("overrides, device, world_size, message", [
    (dict(cuda_graphs="on"), CPU, 1, "--cuda-graphs on: not possible when the device is not CUDA"),
    (dict(cuda_graphs="on"), CUDA, 2, "--cuda-graphs on: not possible when training is distributed"),
    (dict(host_token_embedding="on", tune_llm=True), CUDA, 1, "--host-token-embedding on: .*--tune-llm"),
    (dict(host_token_embedding="on", fsdp="on"), CUDA, 2, "--host-token-embedding on: .*FSDP"),
    (dict(trainable_dtype="bf16", bf16=False), CUDA, 1, "--trainable-dtype bf16: .*--no-bf16"),
    (dict(trainable_dtype="bf16", lora_rank=4), CUDA, 1, "--trainable-dtype bf16: .*LoRA"),
    (dict(trainable_dtype="bf16", fsdp="on"), CUDA, 2, "--trainable-dtype bf16: .*FSDP"),
])
def test_an_on_that_cannot_be_honoured_names_the_flag(overrides, device, world_size, message):
    with pytest.raises(ConfigError, match=message):
        _plan(_cfg(**overrides), device, world_size)


def test_bf16_trained_weights_bring_bf16_compute_also_on_the_cpu():
    cpu = _plan(_cfg(trainable_dtype="bf16", dataloader_num_workers=0))
    assert (cpu.trainable_dtype, cpu.bf16, cpu.tf32, cpu.cuda_graphs) == ("bf16", True, False, False)
    assert "trainable bf16 stochastic rounding (8 B/param" in cpu.describe()
    gpu = _plan(_cfg(trainable_dtype="bf16"), CUDA)
    assert (gpu.bf16, gpu.tf32, gpu.compile, gpu.cuda_graphs) == (True,) * 4  # the step records
    assert _plan(_cfg(), CUDA).trainable_dtype == "fp32"
    assert "trainable fp32 (16 B/param" in _plan(_cfg(), CUDA).describe()


def test_plan_is_frozen_and_described_in_one_line():
    plan = _plan(_cfg(), CUDA)
    with pytest.raises(dataclasses.FrozenInstanceError):
        plan.compile = False
    line = plan.describe()
    assert "\n" not in line and line.startswith("plan: cuda:0 x1")
    assert "compile (budget 0.7)" in line and "embodiment slices [31]" in line


def _settings() -> dict:
    return {"matmul_tf32": torch.backends.cuda.matmul.allow_tf32,
            "cudnn_tf32": torch.backends.cudnn.allow_tf32,
            "matmul_precision": torch.get_float32_matmul_precision(),
            "fallback_random": torch._inductor.config.fallback_random,
            "joint_custom_pre_pass": torch._inductor.config.joint_custom_pre_pass,
            "activation_memory_budget": torch._functorch.config.activation_memory_budget}


def test_training_settings_hold_inside_and_are_restored_after_an_error():
    before = _settings()
    plan = dataclasses.replace(_plan(_cfg()), tf32=True, compile=True, activation_memory_budget=0.3)
    with pytest.raises(RuntimeError, match="inside"), training_settings(plan):
        inside = _settings()
        raise RuntimeError("inside")
    assert (inside["matmul_tf32"], inside["cudnn_tf32"], inside["fallback_random"]) == (True, True, True)
    assert inside["activation_memory_budget"] == 0.3 and inside["joint_custom_pre_pass"] is not None
    assert _settings() == before


def test_a_policy_built_after_finetune_does_not_inherit_its_settings(libero_dataset, tmp_path, monkeypatch,
                                                                      capsys):
    """A CPU run under a plan with TF32 and compile forced on (the compile itself stubbed out: only its
    settings matter here): the steps run with the settings, `finetune` returns with the old values, and
    a Policy built from the checkpoint afterwards runs its model under those old values."""
    from groot.policy import Policy

    before = _settings()
    resolve = plan_module.resolve_plan
    monkeypatch.setattr(plan_module, "resolve_plan", lambda *args: dataclasses.replace(
        resolve(*args), tf32=True, compile=True, activation_memory_budget=0.4))
    compiled = []
    monkeypatch.setattr(precision, "compile_for_training", compiled.append)
    during_steps = []
    train_step = step.train_step
    monkeypatch.setattr(step, "train_step", lambda *args, **kwargs: (
        during_steps.append(_settings()), train_step(*args, **kwargs))[1])

    cfg = FinetuneConfig(dataset_path=[str(libero_dataset)], output_dir=str(tmp_path / "run"),
                         data_config="libero_panda", base_model="tiny", batch_size=2, max_steps=2,
                         save_steps=2, logging_steps=1, dataloader_num_workers=0)
    final = finetune(cfg)

    assert len(compiled) == 1 and len(during_steps) == 2
    for inside in during_steps:
        assert (inside["matmul_tf32"], inside["fallback_random"], inside["activation_memory_budget"]) == (
            True, True, 0.4)
    assert _settings() == before
    saved = load_trainer_state(final)["plan"]
    assert saved["tf32"] and saved["compile"] and saved["embodiment_ids"] == [31]
    assert saved == dataclasses.asdict(plan_module.resolve_plan(cfg, CPU, 1, (31,))) | {
        "embodiment_ids": [31], "trainable": list(saved["trainable"])}
    assert "plan: cpu x1 (one process), fp32" in capsys.readouterr().out

    policy = Policy.from_pretrained(final, "new_embodiment", device="cpu")
    seen = []
    policy.model.backbone.register_forward_pre_hook(lambda module, args: seen.append(_settings()))
    policy.get_action(observation(libero_dataset, get_data_config("libero_panda")))
    assert seen and all(settings == before for settings in seen)
