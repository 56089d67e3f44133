"""The action head's fast-path hooks compute what the plain calls compute (tiny preset, fp32, CPU)."""

from __future__ import annotations

import torch

from groot.model.action_head import resolve_category


def test_precomputed_conditioning_equals_timesteps(tiny_model):
    head = tiny_model.action_head
    torch.manual_seed(0)
    vl = head.encode_vl(torch.randn(2, 12, 64))
    cross_kv = head.model.precompute_cross_kv(vl)
    state_tokens = head.state_encoder(torch.randn(2, 1, 64), 4)
    actions = torch.randn(2, 16, 32)
    timesteps = torch.tensor([250, 250])
    plain = head.predict_velocity(state_tokens, actions, timesteps, 4, vl=vl)
    reused = head.predict_velocity(state_tokens, actions, None, 4, cross_kv=cross_kv,
                                   conditioning=head.step_conditioning(timesteps))
    assert torch.equal(plain, reused)


def test_output_tokens_project_the_last_rows_only(tiny_model):
    dit = tiny_model.action_head.model
    torch.manual_seed(1)
    tokens, vl = torch.randn(2, 49, 64), torch.randn(2, 10, 64)
    timesteps = torch.tensor([0, 500])
    full = dit(tokens, timesteps, vl_features=vl)
    last = dit(tokens, timesteps, vl_features=vl, output_tokens=16)
    assert last.shape == (2, 16, full.shape[-1])
    torch.testing.assert_close(last, full[:, -16:], atol=1e-6, rtol=0)


def test_zero_key_bias_equals_no_bias_and_buckets_are_the_spec_ones(tiny_model):
    head = tiny_model.action_head
    features = torch.randn(1, 9, 64)
    torch.testing.assert_close(head.encode_vl(features, torch.zeros(1, 1, 1, 9)), head.encode_vl(features),
                               atol=1e-6, rtol=0)
    assert head.timestep_buckets(4) == [0, 250, 500, 750]
    assert resolve_category(torch.tensor([5, 5])) == 5
