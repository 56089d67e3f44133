"""`groot finetune --trainable-dtype bf16` end to end on the CPU: trained weights, gradients and AdamW
moments are bf16, the checkpoint serves, and a resumed run reproduces the uninterrupted one bit for bit."""

from __future__ import annotations

import shutil

import torch
from safetensors.torch import load_file
from train_helpers import assert_policy_acts, observation

from groot.data.configs import get_data_config
from groot.model.gr00t_n15 import GR00TN15
from groot.train.checkpointing import STATE_DIR, load_trainer_state
from groot.train.finetune import FinetuneConfig, finetune
from groot.train.logging import read_metrics


def _config(dataset, output_dir, **overrides) -> FinetuneConfig:
    values = dict(dataset_path=[str(dataset)], output_dir=str(output_dir), data_config="libero_panda",
                  base_model="tiny", batch_size=2, max_steps=6, save_steps=3, logging_steps=1,
                  dataloader_num_workers=0, trainable_dtype="bf16")
    return FinetuneConfig(**{**values, **overrides})


def test_bf16_run_resumes_bit_identically_and_its_checkpoint_serves(libero_dataset, tmp_path):
    straight = finetune(_config(libero_dataset, tmp_path / "straight"))
    expected = read_metrics(tmp_path / "straight" / "metrics.jsonl")
    assert load_trainer_state(straight)["plan"]["trainable_dtype"] == "bf16"
    moments = load_file(str(straight / STATE_DIR / "optimizer.safetensors"))
    assert {t.dtype for key, t in moments.items() if not key.endswith("/step")} == {torch.bfloat16}

    interrupted = tmp_path / "interrupted"
    finetune(_config(libero_dataset, interrupted))
    shutil.rmtree(interrupted / "checkpoint-6")  # as if the run had died after step 3's checkpoint
    resumed = finetune(_config(libero_dataset, interrupted, resume=True))
    got = read_metrics(interrupted / "metrics.jsonl")
    assert [r["step"] for r in got] == [1, 2, 3, 4, 5, 6]
    assert [r["loss"] for r in got] == [r["loss"] for r in expected]
    assert [r["grad_norm"] for r in got] == [r["grad_norm"] for r in expected]
    weights = GR00TN15.from_pretrained(resumed).state_dict()
    reference = GR00TN15.from_pretrained(straight).state_dict()
    torch.manual_seed(42)  # the run's seed: the preset's initial weights
    start = GR00TN15.from_preset("tiny").state_dict()
    trained = set()
    for name, tensor in reference.items():
        assert torch.equal(weights[name], tensor), name
        if not torch.equal(tensor, start[name].bfloat16().float()):  # every weight was stored in bf16
            trained.add(name)
    assert trained and all(name.startswith("action_head.") for name in trained)
    assert_policy_acts(resumed, observation(libero_dataset, get_data_config("libero_panda")))
