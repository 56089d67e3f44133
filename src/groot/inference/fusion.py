"""Projection fusion: linears that read the same input run as one GEMM over concatenated weights.

At small batch most of the model's matrix products are too narrow to fill a GPU: q / k / v of every
self-attention and gate / up of every gated MLP each read the same activations. The model computes such
a group in one method (`project_qkv`, `project_gate_up`). `fuse_projections` substitutes, in a model
the engine owns (its private copy), each such module by its fused subclass: the same module with the
group's weights concatenated once (`FusedLinears`, a copy: parameters and checkpoint names stay as
they are) and the method overridden to one product split into the members' column blocks (views).
Stateless, so compiled blocks (`regional_compile`) trace it like any other function of their input.

Results equal the separate projections up to the matrix kernel's accumulation order (bit-identical
when the kernel does not split the reduction dimension). Fuse a fresh copy after the weights change.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from groot.model.dit import Attention, DiTSelfAttentionBlock, VLSelfAttentionBlock
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


class FusedSiglipAttention(SiglipAttention):
    fused: FusedLinears  # q_proj, k_proj, v_proj

    def project_qkv(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return self.fused(x)


class FusedQwen3Attention(Qwen3Attention):
    fused: FusedLinears  # q_proj, k_proj, v_proj

    def project_qkv(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return self.fused(x)


class FusedQwen3MLP(Qwen3MLP):
    fused: FusedLinears  # gate_proj, up_proj

    def project_gate_up(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return self.fused(x)


class FusedAttention(Attention):
    fused: FusedLinears  # to_q, to_k, to_v

    def project_qkv(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return self.fused(x)


QKV = ["q_proj", "k_proj", "v_proj"]
FUSED = {  # model class -> (its fused subclass, the child linears that read one input)
    SiglipAttention: (FusedSiglipAttention, QKV),
    Qwen3Attention: (FusedQwen3Attention, QKV),
    Qwen3MLP: (FusedQwen3MLP, ["gate_proj", "up_proj"]),
    Attention: (FusedAttention, ["to_q", "to_k", "to_v"]),
}


def shared_input_projections(model: nn.Module) -> list[nn.Module]:
    """The modules whose projections always read one input: SigLIP and Qwen3 attention, Qwen3 gated
    MLPs, and the attention of the action head's self-attention blocks (the DiT's cross-attention
    blocks read two inputs and keep their projections)."""
    modules: list[nn.Module] = []
    for module in model.modules():
        if type(module) in (SiglipAttention, Qwen3Attention, Qwen3MLP):
            modules.append(module)
        elif isinstance(module, (DiTSelfAttentionBlock, VLSelfAttentionBlock)):
            modules.append(module.attn1)
    return modules


def fuse_projections(model: nn.Module) -> int:
    """In `model` (a copy the caller owns; see the module docstring), every module of
    `shared_input_projections` becomes its fused subclass. Returns how many."""
    modules = shared_input_projections(model)
    for module in modules:
        fused_class, names = FUSED[type(module)]
        module.__class__ = fused_class
        module.fused = FusedLinears([getattr(module, name) for name in names])
    return len(modules)
