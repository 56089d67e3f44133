"""GR00T N1.5-3B in bf16 on a CUDA device: random weights, one training loss and one action chunk."""

from __future__ import annotations

import pytest
import torch

from groot.model.config import preset_config
from groot.model.gr00t_n15 import GR00TN15

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


def test_n15_3b_bf16_samples_and_trains_on_cuda(batch_factory):
    config = preset_config("n1.5-3b")
    torch.manual_seed(0)
    with torch.device("cuda"):
        model = GR00TN15(config)
    model = model.to(torch.bfloat16).eval()
    batch = batch_factory(config, batch=2, text_tokens=17).to("cuda")
    assert batch.input_ids.shape == (2, 256 + 34)

    generator = torch.Generator(device="cuda").manual_seed(0)
    first = model.get_action(batch, generator=generator)["action_pred"]
    generator.manual_seed(0)
    again = model.get_action(batch, generator=generator)["action_pred"]
    assert first.shape == (2, 16, 32) and first.dtype == torch.bfloat16
    assert torch.isfinite(first).all() and torch.equal(first, again)

    model.train()
    loss = model(batch)["loss"]
    loss.backward()
    assert torch.isfinite(loss)
    assert model.action_head.model.proj_out_2.weight.grad is not None
    assert model.backbone.eagle_model.language_model.model.embed_tokens.weight.grad is None
