"""Projection fusion: one GEMM per group of same-input linears, substituted in a copy of the model only."""

from __future__ import annotations

import torch

from groot.inference.engine import engine_copy
from groot.inference.fusion import (
    FusedLinears,
    FusedQwen3Attention,
    fuse_projections,
    shared_input_projections,
)
from groot.model.qwen3 import Qwen3Attention


def test_fused_linears_equal_the_separate_linears():
    torch.manual_seed(0)
    linears = [torch.nn.Linear(16, n) for n in (8, 4, 4)]
    fused = FusedLinears(linears)
    x = torch.randn(2, 5, 16)
    outputs = fused(x)
    assert [tuple(o.shape) for o in outputs] == [(2, 5, 8), (2, 5, 4), (2, 5, 4)]
    for linear, output in zip(linears, outputs, strict=True):
        torch.testing.assert_close(output, linear(x), atol=1e-6, rtol=0)


def test_groups_cover_self_attention_and_gated_mlps_only(tiny_model):
    modules = shared_input_projections(tiny_model)
    cfg = tiny_model.config
    vision, llm = cfg.backbone_cfg.vision.num_layers, cfg.backbone_cfg.llm.num_layers
    dit = tiny_model.action_head.model
    self_blocks = len(dit.transformer_blocks) - len(dit.cross_block_ids)
    vl_blocks = cfg.action_head_cfg.vl_self_attention_cfg.num_layers
    assert len(modules) == vision + 2 * llm + self_blocks + vl_blocks
    cross_attention = {id(dit.transformer_blocks[i].attn1) for i in dit.cross_block_ids}
    assert not any(id(module) in cross_attention for module in modules)


def test_fusion_substitutes_one_gemm_in_the_copy_and_leaves_the_model_as_it_was(tiny_model):
    attention = tiny_model.backbone.eagle_model.language_model.model.layers[0].self_attn
    x = torch.randn(1, 3, attention.q_proj.in_features)
    separate = attention.project_qkv(x)
    copy = engine_copy(tiny_model)
    assert fuse_projections(copy) == len(shared_input_projections(tiny_model))
    fused_attention = copy.backbone.eagle_model.language_model.model.layers[0].self_attn
    assert type(fused_attention) is FusedQwen3Attention and type(attention) is Qwen3Attention
    assert fused_attention.q_proj.weight is attention.q_proj.weight  # parameters shared, not copied
    calls = []
    fused = fused_attention.fused
    fused_attention.fused = lambda t: calls.append(t) or fused(t)  # count the fused calls
    outputs = fused_attention.project_qkv(x)
    assert len(calls) == 1 and calls[0] is x
    for output, expected in zip(outputs, separate, strict=True):
        torch.testing.assert_close(output, expected, atol=1e-6, rtol=0)
    assert "fused" not in vars(attention)
