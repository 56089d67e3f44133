"""Transformer blocks of the action head: the flow-matching DiT and the VL self-attention adapter.

Parameter names follow the N1.5 checkpoint (`action_head.model.*`, `action_head.vl_self_attention.*`,
spec 3.1-3.3). Parity details kept on purpose (spec 14):
- DiT timestep sinusoid is [cos, sin] with divisor half-1 (127) and takes the integer bucket 0..999;
- AdaLayerNorm chunks (scale, shift) while the output modulation chunks (shift, scale);
- even DiT blocks cross-attend to the VL features, odd blocks self-attend; no attention masks (the
  optional `key_bias` exists for the fast path's length buckets and defaults to none).

Hooks for reusing work across denoising steps (used by `FlowMatchingActionHead.integrate` and the
fast path alike):
- the cross-attention keys / values depend only on the VL features: `DiT.precompute_cross_kv`;
- everything that depends only on the timestep bucket (every AdaLayerNorm's and the output's
  modulation) is `DiT.conditioning(timesteps)`, passed back as `DiT.forward(..., conditioning=...)`;
- `DiT.forward(..., output_tokens=n)` runs the output modulation / projection on the last n rows only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from groot.model.config import DiTConfig, VLSelfAttentionConfig
from groot.model.layers import shared_input_linears

KeyValue = tuple[torch.Tensor, torch.Tensor]  # each [B, heads, L, head_dim]
Modulation = tuple[torch.Tensor, torch.Tensor]  # (gain = 1 + scale, shift), each [B, dim]


@dataclass
class DiTConditioning:
    """What the DiT computes from the timestep alone: one modulation per block and the output's."""

    blocks: list[Modulation]
    output: Modulation


def timestep_sinusoid(timesteps: torch.Tensor, dim: int) -> torch.Tensor:
    """The DiT's timestep features: [cos, sin] of bucket * exp(-ln(1e4) * k / (dim/2 - 1)).
    timesteps: [B] (integer buckets) -> [B, dim] float32"""
    half = dim // 2
    k = torch.arange(half, dtype=torch.float32, device=timesteps.device)
    freqs = torch.exp(-math.log(10000.0) * k / (half - 1))
    angles = timesteps.float()[:, None] * freqs[None, :]
    return torch.cat([torch.cos(angles), torch.sin(angles)], dim=-1)


class TimestepEmbedding(nn.Module):
    """linear_1 -> SiLU -> linear_2."""

    def __init__(self, in_dim: int, dim: int):
        super().__init__()
        self.linear_1 = nn.Linear(in_dim, dim)
        self.linear_2 = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear_2(F.silu(self.linear_1(x)))


class TimestepEncoder(nn.Module):
    """Integer bucket [B] -> conditioning vector [B, dim]."""

    sinusoid_dim = 256

    def __init__(self, dim: int):
        super().__init__()
        self.timestep_embedder = TimestepEmbedding(self.sinusoid_dim, dim)

    def forward(self, timesteps: torch.Tensor) -> torch.Tensor:
        features = timestep_sinusoid(timesteps, self.sinusoid_dim)
        return self.timestep_embedder(features.to(self.timestep_embedder.linear_1.weight.dtype))


class AdaLayerNorm(nn.Module):
    """LN(x) * (1 + scale) + shift with (scale, shift) = linear(SiLU(temb)), scale first."""

    def __init__(self, dim: int, eps: float = 1e-5):
        super().__init__()
        self.linear = nn.Linear(dim, 2 * dim)
        self.norm = nn.LayerNorm(dim, eps=eps, elementwise_affine=False)

    def modulation(self, temb: torch.Tensor) -> Modulation:
        """temb: [B, D] -> (1 + scale, shift), each [B, D]"""
        scale, shift = self.linear(F.silu(temb)).chunk(2, dim=-1)
        return 1 + scale, shift

    def forward(self, x: torch.Tensor, temb: torch.Tensor | None = None,
                modulation: Modulation | None = None) -> torch.Tensor:
        """x: [B, T, D] and temb [B, D] or its precomputed `modulation` -> [B, T, D]"""
        gain, shift = self.modulation(temb) if modulation is None else modulation
        return self.norm(x) * gain[:, None] + shift[:, None]


class Attention(nn.Module):
    """Multi-head attention with biased q/k/v/out projections and SDPA; keys/values may come from a
    context of another width (`kv_dim`) or be passed in precomputed."""

    def __init__(self, dim: int, heads: int, head_dim: int, kv_dim: int | None = None, dropout: float = 0.0):
        super().__init__()
        inner = heads * head_dim
        self.heads = heads
        self.to_q = nn.Linear(dim, inner)
        self.to_k = nn.Linear(kv_dim or dim, inner)
        self.to_v = nn.Linear(kv_dim or dim, inner)
        self.to_out = nn.ModuleList([nn.Linear(inner, dim), nn.Dropout(dropout)])

    def _split_heads(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape  # [B, N, H*hd] -> [B, H, N, hd]
        return x.view(b, n, self.heads, -1).transpose(1, 2)

    def project_kv(self, context: torch.Tensor) -> KeyValue:
        """context: [B, L, kv_dim] -> (K, V), each [B, H, L, hd]"""
        return self._split_heads(self.to_k(context)), self._split_heads(self.to_v(context))

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None,
                kv: KeyValue | None = None, key_bias: torch.Tensor | None = None) -> torch.Tensor:
        """x: [B, N, dim]; context [B, L, kv_dim] or precomputed kv; neither = self-attention.
        key_bias: additive [B, 1, 1, L] (-inf hides a key) or None (every key visible)."""
        if kv is None and context is None:
            q, k, v = (self._split_heads(t) for t in shared_input_linears(self, x, "to_q", "to_k", "to_v"))
        else:
            k, v = self.project_kv(context) if kv is None else kv
            q = self._split_heads(self.to_q(x))
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=key_bias)  # [B, H, N, hd]
        out = out.transpose(1, 2).flatten(2)
        return self.to_out[1](self.to_out[0](out))


class GELUProjection(nn.Module):
    """`ff.net.0`: Linear followed by tanh-approximated GELU."""

    def __init__(self, dim: int, inner: int):
        super().__init__()
        self.proj = nn.Linear(dim, inner)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.gelu(self.proj(x), approximate="tanh")


class FeedForward(nn.Module):
    """net = [GELU projection d->4d, dropout, Linear 4d->d, dropout]."""

    def __init__(self, dim: int, dropout: float, final_dropout: bool):
        super().__init__()
        layers = [GELUProjection(dim, 4 * dim), nn.Dropout(dropout), nn.Linear(4 * dim, dim)]
        if final_dropout:
            layers.append(nn.Dropout(dropout))
        self.net = nn.ModuleList(layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.net:
            x = layer(x)
        return x


class BasicTransformerBlock(nn.Module):
    """Pre-LN block: x += drop(attn1(norm1(x))); x += ff(norm3(x)).

    `ada_norm=True` (DiT): norm1 is timestep-modulated, norm3 has no affine parameters.
    `ada_norm=False` (VL adapter): both are affine LayerNorms."""

    def __init__(self, dim: int, heads: int, head_dim: int, dropout: float, final_dropout: bool,
                 ada_norm: bool, cross_attention_dim: int | None = None):
        super().__init__()
        self.norm1 = AdaLayerNorm(dim) if ada_norm else nn.LayerNorm(dim, eps=1e-5)
        self.attn1 = Attention(dim, heads, head_dim, kv_dim=cross_attention_dim, dropout=dropout)
        self.attn_dropout = nn.Dropout(dropout) if final_dropout else nn.Identity()
        self.norm3 = nn.LayerNorm(dim, eps=1e-5, elementwise_affine=not ada_norm)
        self.ff = FeedForward(dim, dropout, final_dropout)

    def forward(self, x: torch.Tensor, temb: torch.Tensor | None = None,
                context: torch.Tensor | None = None, kv: KeyValue | None = None,
                modulation: Modulation | None = None, key_bias: torch.Tensor | None = None) -> torch.Tensor:
        """x: [B, N, dim]; AdaLN blocks: temb [B, dim] or its precomputed `modulation`;
        context / kv for cross-attention; key_bias [B, 1, 1, L] hides attention keys."""
        if temb is None and modulation is None:
            h = self.norm1(x)
        else:
            h = self.norm1(x, temb, modulation)
        x = x + self.attn_dropout(self.attn1(h, context=context, kv=kv, key_bias=key_bias))
        return x + self.ff(self.norm3(x))


class DiT(nn.Module):
    """Timestep-conditioned transformer over the state/future/action tokens (`action_head.model`)."""

    def __init__(self, cfg: DiTConfig):
        super().__init__()
        dim = cfg.inner_dim
        self.timestep_encoder = TimestepEncoder(dim)
        self.transformer_blocks = nn.ModuleList(
            BasicTransformerBlock(
                dim, cfg.num_attention_heads, cfg.attention_head_dim, cfg.dropout, cfg.final_dropout,
                ada_norm=True,
                cross_attention_dim=cfg.cross_attention_dim if self._is_cross(i, cfg) else None,
            )
            for i in range(cfg.num_layers)
        )
        self.cross_block_ids = [i for i in range(cfg.num_layers) if self._is_cross(i, cfg)]
        self.norm_out = nn.LayerNorm(dim, eps=1e-6, elementwise_affine=False)
        self.proj_out_1 = nn.Linear(dim, 2 * dim)
        self.proj_out_2 = nn.Linear(dim, cfg.output_dim)

    @staticmethod
    def _is_cross(index: int, cfg: DiTConfig) -> bool:
        return index % 2 == 0 or not cfg.interleave_self_attention

    def precompute_cross_kv(self, vl_features: torch.Tensor) -> list[KeyValue]:
        """Keys/values of every cross-attention block, one (K, V) per even block.
        vl_features: [B, L, cross_attention_dim] -> list of ([B, H, L, hd], [B, H, L, hd])"""
        return [self.transformer_blocks[i].attn1.project_kv(vl_features) for i in self.cross_block_ids]

    def conditioning(self, timesteps: torch.Tensor) -> DiTConditioning:
        """timesteps: [B] integer buckets -> every block's AdaLN modulation and the output modulation
        (chunked (shift, scale), unlike the blocks), each tensor [B, inner_dim]."""
        temb = self.timestep_encoder(timesteps)  # [B, inner_dim]
        shift, scale = self.proj_out_1(F.silu(temb)).chunk(2, dim=-1)
        return DiTConditioning([block.norm1.modulation(temb) for block in self.transformer_blocks],
                               (1 + scale, shift))

    def forward(self, tokens: torch.Tensor, timesteps: torch.Tensor | None = None,
                vl_features: torch.Tensor | None = None, cross_kv: list[KeyValue] | None = None,
                conditioning: DiTConditioning | None = None, vl_key_bias: torch.Tensor | None = None,
                output_tokens: int | None = None) -> torch.Tensor:
        """tokens: [B, N, inner_dim]; timesteps [B] integer buckets or their `conditioning`; either
        vl_features [B, L, cross_attention_dim] or their `precompute_cross_kv`; vl_key_bias
        [B, 1, 1, L] hides VL positions from the cross-attention; output_tokens: project only the
        last n rows -> [B, N or n, output_dim]"""
        if cross_kv is None:
            if vl_features is None:
                raise ValueError("DiT.forward needs vl_features or cross_kv")
            cross_kv = self.precompute_cross_kv(vl_features)
        if conditioning is None:
            if timesteps is None:
                raise ValueError("DiT.forward needs timesteps or their conditioning")
            conditioning = self.conditioning(timesteps)
        kv_of_block = dict(zip(self.cross_block_ids, cross_kv, strict=True))
        x = tokens
        blocks = zip(self.transformer_blocks, conditioning.blocks, strict=True)
        for i, (block, modulation) in enumerate(blocks):
            kv = kv_of_block.get(i)
            x = block(x, kv=kv, modulation=modulation, key_bias=None if kv is None else vl_key_bias)
        if output_tokens is not None:
            x = x[:, -output_tokens:]
        gain, shift = conditioning.output
        return self.proj_out_2(self.norm_out(x) * gain[:, None] + shift[:, None])


class SelfAttentionTransformer(nn.Module):
    """Plain pre-LN self-attention blocks over the VL features (`action_head.vl_self_attention`)."""

    def __init__(self, cfg: VLSelfAttentionConfig):
        super().__init__()
        dim = cfg.num_attention_heads * cfg.attention_head_dim
        self.transformer_blocks = nn.ModuleList(
            BasicTransformerBlock(dim, cfg.num_attention_heads, cfg.attention_head_dim, cfg.dropout,
                                  cfg.final_dropout, ada_norm=False)
            for _ in range(cfg.num_layers)
        )

    def forward(self, x: torch.Tensor, key_bias: torch.Tensor | None = None) -> torch.Tensor:
        """x: [B, L, D], key_bias [B, 1, 1, L] (hides padded positions) or None -> [B, L, D]"""
        for block in self.transformer_blocks:
            x = block(x, key_bias=key_bias)
        return x
