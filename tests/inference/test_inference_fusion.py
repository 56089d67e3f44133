"""Projection fusion: one GEMM per group of same-input linears, the model's modules restored after."""

from __future__ import annotations

import torch

from groot.inference.fusion import FusedGroup, ProjectionFusion, shared_input_projections


def test_fused_group_equals_the_separate_linears():
    torch.manual_seed(0)
    linears = [torch.nn.Linear(16, n) for n in (8, 4, 4)]
    group = FusedGroup(linears)
    x = torch.randn(2, 5, 16)
    product = group.output(x)
    assert product.shape == (2, 5, 16) and group.output(x) is product  # computed once per input
    for linear, (start, end) in zip(linears, group.columns, strict=True):
        torch.testing.assert_close(product[..., start:end], linear(x), atol=1e-6, rtol=0)
    assert group.output(x.clone()) is not product


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


def test_applied_swaps_in_slices_and_restores_the_linears(tiny_model):
    attention = tiny_model.backbone.eagle_model.language_model.model.layers[0].self_attn
    original = attention.q_proj
    fusion = ProjectionFusion.for_model(tiny_model)
    x = torch.randn(1, 3, original.in_features)
    with fusion.applied():
        assert attention.q_proj is not original
        torch.testing.assert_close(attention.q_proj(x), original(x), atol=1e-6, rtol=0)
    assert attention.q_proj is original
    assert all(group._input is None for group in fusion.groups)
