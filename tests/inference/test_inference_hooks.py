"""The model's public pieces, which the engine calls, compute what the whole calls compute (tiny preset,
fp32, CPU)."""

from __future__ import annotations

import torch

from groot.model.action_head import resolve_category


def test_dit_forward_equals_its_public_pieces(tiny_model):
    dit = tiny_model.action_head.model
    torch.manual_seed(0)
    tokens, vl = torch.randn(2, 49, 64), torch.randn(2, 12, 64)
    timesteps = torch.tensor([250, 250])
    whole = dit(tokens, timesteps, vl)
    pieces = dit.transform(tokens, dit.cross_kv(vl), dit.conditioning(timesteps))
    assert torch.equal(whole, pieces)


def test_output_tokens_project_the_last_rows_only(tiny_model):
    dit = tiny_model.action_head.model
    torch.manual_seed(1)
    tokens, vl = torch.randn(2, 49, 64), torch.randn(2, 10, 64)
    timesteps = torch.tensor([0, 500])
    full = dit(tokens, timesteps, vl)
    last = dit(tokens, timesteps, vl, output_tokens=16)
    assert last.shape == (2, 16, full.shape[-1])
    torch.testing.assert_close(last, full[:, -16:], atol=1e-6, rtol=0)


def test_buckets_are_the_spec_ones(tiny_model):
    head = tiny_model.action_head
    assert head.timestep_buckets(4) == [0, 250, 500, 750]
    assert resolve_category(torch.tensor([5, 5])) == 5
