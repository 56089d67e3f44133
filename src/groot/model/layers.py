"""Building blocks shared by the backbone modules: RMSNorm, rotary embedding, attention masks, init."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


def _rms_normalize_float32(x: torch.Tensor, eps: float) -> torch.Tensor:
    """x / sqrt(mean(x^2) + eps) over the last dim, computed in float32 -> x's dtype (torch < 2.4)."""
    x32 = x.to(torch.float32)
    return (x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + eps)).to(x.dtype)


def _rms_normalize_fused(x: torch.Tensor, eps: float) -> torch.Tensor:
    """The same with `F.rms_norm` (torch >= 2.4), which computes half-precision inputs in float32."""
    return F.rms_norm(x, (x.shape[-1],), eps=eps)


rms_normalize = _rms_normalize_fused if hasattr(F, "rms_norm") else _rms_normalize_float32


class RMSNorm(nn.Module):
    """Root-mean-square norm computed in float32, cast back to the input dtype before the gain."""

    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.weight * rms_normalize(x, self.eps)


def rotary_cos_sin(positions: torch.Tensor, head_dim: int, theta: float,
                   dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """Rotary tables for the rotate-half convention. positions: [L] -> cos, sin: [L, head_dim]"""
    exponents = torch.arange(0, head_dim, 2, device=positions.device, dtype=torch.float32) / head_dim
    inv_freq = 1.0 / (theta ** exponents)  # [head_dim / 2]
    angles = positions.to(torch.float32)[:, None] * inv_freq[None, :]  # [L, head_dim / 2]
    angles = torch.cat([angles, angles], dim=-1)  # [L, head_dim]
    return angles.cos().to(dtype), angles.sin().to(dtype)


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x: [B, H, L, D], cos / sin: [L, D] -> [B, H, L, D]; the second half rotates into the first."""
    first, second = x.chunk(2, dim=-1)
    rotated = torch.cat([-second, first], dim=-1)
    return x * cos + rotated * sin


def causal_padding_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """Boolean attention mask (True = may attend) combining causality with key padding.

    attention_mask: [B, L] (1 = token, 0 = padding) -> [B, 1, L, L]. Every query also sees itself, so
    padding rows (all keys masked under left padding) stay finite instead of turning into NaN; callers
    zero those rows' attention output afterwards.
    """
    length = attention_mask.shape[-1]
    idx = torch.arange(length, device=attention_mask.device)
    causal = idx[None, :] <= idx[:, None]  # [L, L]
    keys = attention_mask.to(torch.bool)[:, None, None, :]  # [B, 1, 1, L]
    diagonal = idx[None, :] == idx[:, None]
    return (causal & keys) | diagonal


def init_weights(module: nn.Module, std: float = 0.02) -> None:
    """Normal(0, std) for linear / conv / embedding weights, zeros for biases, ones / zeros for norms."""
    for sub in module.modules():
        if isinstance(sub, (nn.Linear, nn.Conv2d, nn.Embedding)):
            nn.init.normal_(sub.weight, std=std)
            if getattr(sub, "bias", None) is not None:
                nn.init.zeros_(sub.bias)
        elif isinstance(sub, nn.LayerNorm):
            nn.init.ones_(sub.weight)
            nn.init.zeros_(sub.bias)
        elif isinstance(sub, RMSNorm):
            nn.init.ones_(sub.weight)
        elif isinstance(sub, nn.MultiheadAttention):
            nn.init.normal_(sub.in_proj_weight, std=std)
            nn.init.zeros_(sub.in_proj_bias)
