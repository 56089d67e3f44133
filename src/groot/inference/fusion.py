"""Projection fusion: linears that read the same input run as one GEMM over concatenated weights.

At small batch most of the model's matrix products are too narrow to fill a GPU: q / k / v of every
self-attention and gate / up of every gated MLP each read the same activations. The model computes such
groups through `layers.shared_input_linears(module, x, *names)`; `ProjectionFusion` concatenates each
group's weights once (a copy: the model's parameters and checkpoint names stay as they are) and, inside
`with fusion.applied():`, gives each such module a `fused_linears` callable: one product, split into the
members' column blocks (views). Stateless, so compiled blocks (`regional_compile`) trace it like any
other function of their input.

Results equal the separate projections up to the matrix kernel's accumulation order (bit-identical
when the kernel does not split the reduction dimension). Call `ProjectionFusion.for_model` again after
the weights change.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn

from groot.model.dit import DiT, SelfAttentionTransformer
from groot.model.qwen3 import Qwen3Attention, Qwen3MLP
from groot.model.siglip import SiglipAttention


class FusedLinears:
    """The concatenated weights of linears that read one input: x [..., in] -> their outputs, in order."""

    def __init__(self, linears: list[nn.Linear]):
        with torch.no_grad():
            self.weight = torch.cat([linear.weight for linear in linears])  # [sum of out, in]
            has_bias = [linear.bias is not None for linear in linears]
            if any(has_bias) and not all(has_bias):
                raise ValueError("FusedLinears: the linears of one group must all have a bias or none")
            self.bias = torch.cat([linear.bias for linear in linears]) if all(has_bias) else None
        self.sizes = [linear.out_features for linear in linears]

    def __call__(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return F.linear(x, self.weight, self.bias).split(self.sizes, dim=-1)


def shared_input_projections(model: nn.Module) -> list[tuple[nn.Module, list[str]]]:
    """(module, names of its child linears that always read the same input) over the whole model:
    SigLIP and Qwen3 q/k/v, Qwen3 gate/up, and q/k/v of the action head's self-attention blocks
    (the DiT's cross-attention blocks read two inputs and keep their projections)."""
    groups: list[tuple[nn.Module, list[str]]] = []
    qkv = ["q_proj", "k_proj", "v_proj"]
    for module in model.modules():
        if isinstance(module, (SiglipAttention, Qwen3Attention)):
            groups.append((module, qkv))
        elif isinstance(module, Qwen3MLP):
            groups.append((module, ["gate_proj", "up_proj"]))
        elif isinstance(module, DiT):
            cross = set(module.cross_block_ids)
            groups += [(block.attn1, ["to_q", "to_k", "to_v"])
                       for i, block in enumerate(module.transformer_blocks) if i not in cross]
        elif isinstance(module, SelfAttentionTransformer):
            groups += [(block.attn1, ["to_q", "to_k", "to_v"]) for block in module.transformer_blocks]
    return groups


class ProjectionFusion:
    def __init__(self, groups: list[tuple[nn.Module, list[str]]]):
        self.groups = [(module, FusedLinears([getattr(module, name) for name in names]))
                       for module, names in groups]

    @classmethod
    def for_model(cls, model: nn.Module) -> ProjectionFusion:
        return cls(shared_input_projections(model))

    @contextmanager
    def applied(self) -> Iterator[None]:
        """Each group's module computes it as one GEMM; the separate linears are back on exit."""
        for module, fused in self.groups:
            module.fused_linears = fused
        try:
            yield
        finally:
            for module, _ in self.groups:
                del module.fused_linears
