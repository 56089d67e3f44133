"""A NaN that reaches a training batch stops fine-tuning: the error names the first bad step and the
episode its batch came from, the NaN loss is logged, and no checkpoint is written after that step."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from groot.data.dataset import GrootDataset
from groot.errors import NonFiniteError
from groot.train.checkpointing import list_checkpoints
from groot.train.finetune import FinetuneConfig, finetune
from groot.train.logging import read_metrics
from groot.train.nonfinite import NO_STEP, NonFiniteWatch

BAD_SAMPLE = 4  # the 5th sample drawn: batch 3 (batch size 2), i.e. training step 3


def test_watch_keeps_the_first_bad_step_without_reading_the_device():
    watch = NonFiniteWatch(torch.device("cpu"))
    for step, loss in [(1, 0.5), (2, math.inf), (3, math.nan)]:
        watch.record(step, torch.tensor(loss), torch.tensor(1.0), [(0, step - 1)])
    assert int(watch.first_step) == 2 and watch.values.tolist() == [math.inf, 1.0]
    with pytest.raises(NonFiniteError, match=r"training step 2: .* found loss inf, gradient norm 1.0; "
                                              r"its batch held epoch 0 batch 1"):
        watch.check(lambda epoch, batch: f"epoch {epoch} batch {batch}")


def test_watch_forgets_finite_steps_once_checked():
    watch = NonFiniteWatch(torch.device("cpu"))
    watch.record(1, torch.tensor(0.5), torch.tensor(2.0), [(0, 0)])
    watch.check(lambda epoch, batch: "")
    assert watch.positions == {} and int(watch.first_step) == NO_STEP


def test_nan_in_a_batch_stops_training_naming_step_and_episode(libero_dataset, tmp_path, monkeypatch):
    drawn: list[int] = []
    original = GrootDataset.get_step

    def get_step(self, trajectory_id, base_index):
        sample = original(self, trajectory_id, base_index)
        drawn.append(trajectory_id)
        if len(drawn) == BAD_SAMPLE + 1:
            sample["action"] = np.full_like(sample["action"], np.nan)
        return sample

    monkeypatch.setattr(GrootDataset, "get_step", get_step)
    output = tmp_path / "run"
    cfg = FinetuneConfig(dataset_path=[str(libero_dataset)], output_dir=str(output),
                         data_config="libero_panda", base_model="tiny", batch_size=2, max_steps=8,
                         save_steps=2, logging_steps=2, dataloader_num_workers=0)
    with pytest.raises(NonFiniteError) as error:
        finetune(cfg)
    message = str(error.value)
    assert message.startswith("training step 3: expected a finite loss and gradient norm, found loss nan")
    batch = sorted(set(drawn[4:6]))  # the episodes of the bad sample's batch (samples 4 and 5)
    assert f"its batch held episode(s) {', '.join(map(str, batch))} of {libero_dataset};" in message
    # step 3 is checked before step 4's checkpoint is written: only checkpoint-2 exists
    assert [step for step, _ in list_checkpoints(output)] == [2]
    losses = {record["step"]: record["loss"] for record in read_metrics(output / "metrics.jsonl")}
    assert math.isfinite(losses[2]) and math.isnan(losses[4])
