"""Projection fusion: linears that read the same input run as one GEMM over concatenated weights.

At small batch most of the model's matrix products are too narrow to fill a GPU: q / k / v of every
self-attention and gate / up of every gated MLP each read the same activations. `ProjectionFusion`
concatenates each group's weights once (a copy: the model's parameters and checkpoint names stay as
they are) and, inside `with fusion.applied():`, puts a `FusedSlice` in place of every member linear. The
first member called on an input computes the group's one product; the others return their column
block of it. The model's own forward code runs unchanged.

Results equal the separate projections up to the matrix kernel's accumulation order (bit-identical
when the kernel does not split the reduction dimension). Call `ProjectionFusion.for_model` again after
the weights change.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from groot.model.dit import DiT, SelfAttentionTransformer
from groot.model.qwen3 import Qwen3Attention, Qwen3MLP
from groot.model.siglip import SiglipAttention


class FusedGroup:
    """The concatenated weights of linears that read one input, and the last product computed."""

    def __init__(self, linears: list[nn.Linear]):
        with torch.no_grad():
            self.weight = torch.cat([linear.weight for linear in linears])  # [sum of out, in]
            has_bias = [linear.bias is not None for linear in linears]
            if any(has_bias) and not all(has_bias):
                raise ValueError("FusedGroup: the linears of one group must all have a bias or none")
            self.bias = torch.cat([linear.bias for linear in linears]) if all(has_bias) else None
        ends = torch.tensor([linear.out_features for linear in linears]).cumsum(0).tolist()
        self.columns = list(zip([0, *ends[:-1]], ends, strict=True))  # per member: [start, end)
        self._input: torch.Tensor | None = None
        self._output: torch.Tensor | None = None

    def output(self, x: torch.Tensor) -> torch.Tensor:
        """x [..., in] -> the group's product [..., sum of out]; computed once per input tensor."""
        if x is not self._input:
            self._input, self._output = x, F.linear(x, self.weight, self.bias)
        return self._output

    def clear(self) -> None:
        self._input = self._output = None


class FusedSlice(nn.Module):
    """Stands in for one member linear: its column block of the group's product (a view)."""

    def __init__(self, group: FusedGroup, index: int):
        super().__init__()
        self.group = group
        self.start, self.end = group.columns[index]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [..., in] -> [..., out]"""
        return self.group.output(x)[..., self.start:self.end]


@dataclass
class _Member:
    parent: nn.Module
    name: str
    original: nn.Module
    stand_in: FusedSlice


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
        self.groups: list[FusedGroup] = []
        self.members: list[_Member] = []
        for parent, names in groups:
            linears = [getattr(parent, name) for name in names]
            group = FusedGroup(linears)
            self.groups.append(group)
            self.members += [_Member(parent, name, linear, FusedSlice(group, i))
                             for i, (name, linear) in enumerate(zip(names, linears, strict=True))]

    @classmethod
    def for_model(cls, model: nn.Module) -> ProjectionFusion:
        return cls(shared_input_projections(model))

    @contextmanager
    def applied(self) -> Iterator[None]:
        """Swap the member linears for their fused stand-ins; the originals are back on exit."""
        for member in self.members:
            setattr(member.parent, member.name, member.stand_in)
        try:
            yield
        finally:
            for member in self.members:
                setattr(member.parent, member.name, member.original)
            for group in self.groups:
                group.clear()
