"""Projection fusion: one GEMM per group of same-input linears, the model's modules restored after."""

from __future__ import annotations

import torch

from groot.inference.fusion import FusedLinears, ProjectionFusion, shared_input_projections
from groot.model.layers import shared_input_linears


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
    groups = shared_input_projections(tiny_model)
    cfg = tiny_model.config
    vision, llm = cfg.backbone_cfg.vision.num_layers, cfg.backbone_cfg.llm.num_layers
    dit = tiny_model.action_head.model
    self_blocks = len(dit.transformer_blocks) - len(dit.cross_block_ids)
    vl_blocks = cfg.action_head_cfg.vl_self_attention_cfg.num_layers
    assert len(groups) == vision + 2 * llm + self_blocks + vl_blocks
    cross_attention = {id(dit.transformer_blocks[i].attn1) for i in dit.cross_block_ids}
    assert not any(id(module) in cross_attention for module, _ in groups)


def test_applied_fuses_each_group_and_restores_the_separate_linears(tiny_model):
    attention = tiny_model.backbone.eagle_model.language_model.model.layers[0].self_attn
    names = ("q_proj", "k_proj", "v_proj")
    x = torch.randn(1, 3, attention.q_proj.in_features)
    separate = shared_input_linears(attention, x, *names)
    fusion = ProjectionFusion.for_model(tiny_model)
    calls = []
    with fusion.applied():
        fused = attention.fused_linears
        attention.fused_linears = lambda t: calls.append(t) or fused(t)  # count the fused calls
        outputs = shared_input_linears(attention, x, *names)
    assert len(calls) == 1 and calls[0] is x
    for output, expected in zip(outputs, separate, strict=True):
        torch.testing.assert_close(output, expected, atol=1e-6, rtol=0)
    assert not hasattr(attention, "fused_linears")
