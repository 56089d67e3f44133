"""Backbone building blocks: RMSNorm's float32 semantics and grouped-query attention's two SDPA paths."""

from __future__ import annotations

import pytest
import torch

from groot.model import layers, qwen3
from groot.model.layers import RMSNorm


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_rms_norm_computes_in_float32_and_applies_the_gain_after_the_cast(dtype):
    torch.manual_seed(0)
    x = (torch.randn(4, 7, 96) * 5).to(dtype)
    norm = RMSNorm(96, eps=1e-5)
    with torch.no_grad():
        norm.weight.normal_(1.0, 0.5)
        got = norm(x)
    x32 = x.to(torch.float32)
    normalized = (x32 / torch.sqrt(x32.pow(2).mean(-1, keepdim=True) + 1e-5)).to(dtype)
    expected = norm.weight.detach() * normalized  # float32 gain x input-dtype activations
    assert got.dtype == expected.dtype == torch.float32
    tol = 1e-6 if dtype == torch.float32 else 2 ** -8  # bf16: at most one rounding step apart
    torch.testing.assert_close(got, expected, atol=0, rtol=tol)
    fallback = norm.weight.detach() * layers._rms_normalize_float32(x, 1e-5)  # torch < 2.4 path
    torch.testing.assert_close(got, fallback, atol=0, rtol=tol)


@pytest.mark.parametrize("masked", [False, True])
def test_grouped_query_attention_equals_expanded_heads(monkeypatch, masked):
    torch.manual_seed(1)
    q = torch.randn(2, 8, 10, 16)
    k, v = torch.randn(2, 2, 10, 16), torch.randn(2, 2, 10, 16)
    mask = None
    if masked:
        token = torch.ones(2, 10, dtype=torch.int64)
        token[1, :4] = 0
        mask = layers.causal_padding_mask(token)
    native = qwen3.grouped_query_attention(q, k, v, mask)
    monkeypatch.setattr(qwen3, "SDPA_HAS_GQA", False)
    expanded = qwen3.grouped_query_attention(q, k, v, mask)
    # reference: query head h attends with K/V head h // 4, written out without SDPA
    kx, vx = k.repeat_interleave(4, dim=1), v.repeat_interleave(4, dim=1)
    scores = q @ kx.transpose(-1, -2) / 4.0
    allowed = torch.ones(10, 10, dtype=torch.bool).tril() if mask is None else mask
    reference = scores.masked_fill(~allowed, float("-inf")).softmax(-1) @ vx
    torch.testing.assert_close(native, reference, atol=1e-5, rtol=0)
    torch.testing.assert_close(expanded, reference, atol=1e-5, rtol=0)
