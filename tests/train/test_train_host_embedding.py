"""`HostTokenEmbedding`: the frozen token table moves to the host, batches carry the looked-up rows, and
the model's loss is the same as with the table in place; a trained table is refused."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from groot.model.batch import Batch
from groot.model.gr00t_n15 import GR00TN15
from groot.model.synthetic_batch import synthetic_batch
from groot.train.host_embedding import HostTokenEmbedding, token_embedding


def _tiny(tune_llm: bool = False) -> GR00TN15:
    torch.manual_seed(0)
    model = GR00TN15.from_preset("tiny")
    model.set_trainable(tune_llm=tune_llm, tune_visual=False, tune_projector=True, tune_diffusion_model=True)
    return model.train()


def _loss(model: GR00TN15, batch: Batch) -> torch.Tensor:
    torch.manual_seed(7)  # same noise, times and dropout masks
    return model(batch)["loss"]


def test_host_rows_give_the_same_loss_and_are_what_the_model_reads():
    model = _tiny()
    batch = synthetic_batch(model.config, batch=3, text_tokens=5)
    reference = _loss(model, batch)
    table = token_embedding(model).weight.detach().clone()

    looked_up = HostTokenEmbedding(model)(batch)

    assert token_embedding(model).weight.device.type == "cpu"
    assert torch.equal(looked_up.inputs_embeds, table[batch.input_ids])
    assert torch.equal(_loss(model, looked_up), reference)
    shifted = dataclasses.replace(looked_up, inputs_embeds=looked_up.inputs_embeds + 1.0)  # read by the model
    assert not torch.allclose(_loss(model, shifted), reference)


def test_a_trained_table_stays_on_the_device():
    with pytest.raises(ValueError, match="tune-llm"):
        HostTokenEmbedding(_tiny(tune_llm=True))
