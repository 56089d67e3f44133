"""Transformer blocks of the action head: the flow-matching DiT and the VL self-attention adapter.

Parameter names follow the N1.5 checkpoint (`action_head.model.*`, `action_head.vl_self_attention.*`,
spec 3.1-3.3). Parity details kept on purpose (spec 14):
- DiT timestep sinusoid is [cos, sin] with divisor half-1 (127) and takes the integer bucket 0..999;
- AdaLayerNorm chunks (scale, shift) while the output modulation chunks (shift, scale);
- even DiT blocks cross-attend to the VL features, odd blocks self-attend; no attention masks in N1.5.
  N1.6's AlternateVLDiT (`DiTConfig.attend_text_every_n_blocks`) gives each cross block a key mask:
  text tokens only or image tokens only, alternating (`DiT.cross_masks`).

Three block roles share one layout (`TransformerBlock`: norm1, attn1, norm3, ff) and each has its own
class and forward: `DiTCrossAttentionBlock`, `DiTSelfAttentionBlock`, `VLSelfAttentionBlock`.

`DiT.forward(tokens, timesteps, vl_features)` is the whole network. Its public pieces let a sampler
compute once what does not change between denoising steps: `DiT.cross_kv(vl_features)` (the
cross-attention keys / values), `DiT.conditioning(timesteps)` (every modulation) and
`DiT.transform(tokens, cross_kv, conditioning)` (the blocks and the output projection).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from groot.model.config import DiTConfig, VLSelfAttentionConfig

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

    def forward(self, x: torch.Tensor, modulation: Modulation) -> torch.Tensor:
        """x: [B, T, D], modulation: `self.modulation(temb)` -> [B, T, D]"""
        gain, shift = modulation
        return self.norm(x) * gain[:, None] + shift[:, None]


class Attention(nn.Module):
    """Multi-head attention with biased q/k/v/out projections and SDPA. `forward` self-attends;
    `cross_attend` reads keys / values projected from a context (of width `kv_dim`) by `project_kv`."""

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

    def project_qkv(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Self-attention projections of one input. x: [B, N, dim] -> q, k, v, each [B, N, H*hd]"""
        return self.to_q(x), self.to_k(x), self.to_v(x)

    def project_kv(self, context: torch.Tensor) -> KeyValue:
        """context: [B, L, kv_dim] -> (K, V), each [B, H, L, hd]"""
        return self._split_heads(self.to_k(context)), self._split_heads(self.to_v(context))

    def _attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                mask: torch.Tensor | None = None) -> torch.Tensor:
        """q [B, H, N, hd], k / v [B, H, L, hd], mask: bool [B, 1, 1, L] (True = may attend) or None
        -> [B, N, dim]"""
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)  # [B, H, N, hd]
        out = out.transpose(1, 2).flatten(2)
        return self.to_out[1](self.to_out[0](out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Self-attention. x: [B, N, dim] -> [B, N, dim]"""
        q, k, v = (self._split_heads(t) for t in self.project_qkv(x))
        return self._attend(q, k, v)

    def cross_attend(self, x: torch.Tensor, kv: KeyValue, mask: torch.Tensor | None = None) -> torch.Tensor:
        """x: [B, N, dim], kv: `project_kv(context)`, mask: bool [B, 1, 1, L] or None -> [B, N, dim]"""
        return self._attend(self._split_heads(self.to_q(x)), *kv, mask)


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


class TransformerBlock(nn.Module):
    """The layout of every action-head block (pre-LN): x += drop(attn1(norm1(x))); x += ff(norm3(x)).

    `ada_norm=True` (DiT): norm1 is timestep-modulated, norm3 has no affine parameters.
    `ada_norm=False` (VL adapter): both are affine LayerNorms. The subclasses below are the roles."""

    def __init__(self, dim: int, heads: int, head_dim: int, dropout: float, final_dropout: bool,
                 ada_norm: bool, cross_attention_dim: int | None = None):
        super().__init__()
        self.norm1 = AdaLayerNorm(dim) if ada_norm else nn.LayerNorm(dim, eps=1e-5)
        self.attn1 = Attention(dim, heads, head_dim, kv_dim=cross_attention_dim, dropout=dropout)
        self.attn_dropout = nn.Dropout(dropout) if final_dropout else nn.Identity()
        self.norm3 = nn.LayerNorm(dim, eps=1e-5, elementwise_affine=not ada_norm)
        self.ff = FeedForward(dim, dropout, final_dropout)


class DiTCrossAttentionBlock(TransformerBlock):
    """Even DiT block: timestep-modulated, cross-attends to the VL features' keys / values."""

    def __init__(self, cfg: DiTConfig):
        super().__init__(cfg.inner_dim, cfg.num_attention_heads, cfg.attention_head_dim, cfg.dropout,
                         cfg.final_dropout, ada_norm=True, cross_attention_dim=cfg.cross_attention_dim)

    def forward(self, x: torch.Tensor, modulation: Modulation, kv: KeyValue,
                mask: torch.Tensor | None = None) -> torch.Tensor:
        """x: [B, N, dim], modulation: `norm1.modulation(temb)`, kv: `attn1.project_kv(vl)`,
        mask: bool [B, 1, 1, L] (the VL tokens this block may read) or None -> [B, N, dim]"""
        x = x + self.attn_dropout(self.attn1.cross_attend(self.norm1(x, modulation), kv, mask))
        return x + self.ff(self.norm3(x))


class DiTSelfAttentionBlock(TransformerBlock):
    """Odd DiT block (with `interleave_self_attention`): timestep-modulated self-attention."""

    def __init__(self, cfg: DiTConfig):
        super().__init__(cfg.inner_dim, cfg.num_attention_heads, cfg.attention_head_dim, cfg.dropout,
                         cfg.final_dropout, ada_norm=True)

    def forward(self, x: torch.Tensor, modulation: Modulation) -> torch.Tensor:
        """x: [B, N, dim], modulation: `norm1.modulation(temb)` -> [B, N, dim]"""
        x = x + self.attn_dropout(self.attn1(self.norm1(x, modulation)))
        return x + self.ff(self.norm3(x))


class VLSelfAttentionBlock(TransformerBlock):
    """VL adapter block: affine LayerNorms, self-attention over the VL features."""

    def __init__(self, cfg: VLSelfAttentionConfig):
        dim = cfg.num_attention_heads * cfg.attention_head_dim
        super().__init__(dim, cfg.num_attention_heads, cfg.attention_head_dim, cfg.dropout,
                         cfg.final_dropout, ada_norm=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [B, L, dim] -> [B, L, dim]"""
        x = x + self.attn_dropout(self.attn1(self.norm1(x)))
        return x + self.ff(self.norm3(x))


class DiT(nn.Module):
    """Timestep-conditioned transformer over the state/future/action tokens (`action_head.model`)."""

    def __init__(self, cfg: DiTConfig):
        super().__init__()
        self.cfg = cfg
        dim = cfg.inner_dim
        self.timestep_encoder = TimestepEncoder(dim)
        self.transformer_blocks = nn.ModuleList(
            DiTCrossAttentionBlock(cfg) if self._is_cross(i, cfg) else DiTSelfAttentionBlock(cfg)
            for i in range(cfg.num_layers)
        )
        self.cross_block_ids = [i for i in range(cfg.num_layers) if self._is_cross(i, cfg)]
        self.norm_out = nn.LayerNorm(dim, eps=1e-6, elementwise_affine=False)
        self.proj_out_1 = nn.Linear(dim, 2 * dim)
        self.proj_out_2 = nn.Linear(dim, cfg.output_dim)

    @staticmethod
    def _is_cross(index: int, cfg: DiTConfig) -> bool:
        return index % 2 == 0 or not cfg.interleave_self_attention

    def cross_kv(self, vl_features: torch.Tensor) -> list[KeyValue]:
        """Keys/values of every cross-attention block, one (K, V) per even block.
        vl_features: [B, L, cross_attention_dim] -> list of ([B, H, L, hd], [B, H, L, hd])"""
        return [self.transformer_blocks[i].attn1.project_kv(vl_features) for i in self.cross_block_ids]

    def cross_masks(self, text_mask: torch.Tensor, image_mask: torch.Tensor) -> list[torch.Tensor] | None:
        """The AlternateVLDiT key masks, one per cross block (in `cross_block_ids` order): block i
        reads text tokens when i % (2 * attend_text_every_n_blocks) == 0, else image tokens.
        text_mask / image_mask: bool [B, L] (padding excluded from both) -> list of bool [B, 1, 1, L];
        None when the config attends to every VL token."""
        every = self.cfg.attend_text_every_n_blocks
        if every is None:
            return None
        text, image = text_mask[:, None, None, :], image_mask[:, None, None, :]
        return [text if i % (2 * every) == 0 else image for i in self.cross_block_ids]

    def conditioning(self, timesteps: torch.Tensor) -> DiTConditioning:
        """timesteps: [B] integer buckets -> every block's AdaLN modulation and the output modulation
        (chunked (shift, scale), unlike the blocks), each tensor [B, inner_dim]."""
        temb = self.timestep_encoder(timesteps)  # [B, inner_dim]
        shift, scale = self.proj_out_1(F.silu(temb)).chunk(2, dim=-1)
        return DiTConditioning([block.norm1.modulation(temb) for block in self.transformer_blocks],
                               (1 + scale, shift))

    def transform(self, tokens: torch.Tensor, cross_kv: list[KeyValue], conditioning: DiTConditioning,
                  output_tokens: int | None = None,
                  cross_masks: list[torch.Tensor] | None = None) -> torch.Tensor:
        """The blocks and the output projection. tokens: [B, N, inner_dim], cross_kv: `cross_kv(vl)`,
        conditioning: `conditioning(timesteps)`, output_tokens: project only the last n rows,
        cross_masks: `cross_masks(text, image)` or None -> [B, N or n, output_dim]"""
        masks = cross_masks if cross_masks is not None else [None] * len(self.cross_block_ids)
        memory_of_block = dict(zip(self.cross_block_ids, zip(cross_kv, masks, strict=True), strict=True))
        x = tokens
        blocks = zip(self.transformer_blocks, conditioning.blocks, strict=True)
        for i, (block, modulation) in enumerate(blocks):
            x = block(x, modulation, *memory_of_block[i]) if i in memory_of_block else block(x, modulation)
        if output_tokens is not None:
            x = x[:, -output_tokens:]
        gain, shift = conditioning.output
        return self.proj_out_2(self.norm_out(x) * gain[:, None] + shift[:, None])

    def forward(self, tokens: torch.Tensor, timesteps: torch.Tensor, vl_features: torch.Tensor,
                output_tokens: int | None = None,
                cross_masks: list[torch.Tensor] | None = None) -> torch.Tensor:
        """tokens: [B, N, inner_dim], timesteps: [B] integer buckets, vl_features
        [B, L, cross_attention_dim], cross_masks: see `transform` -> [B, N or output_tokens, output_dim]"""
        return self.transform(tokens, self.cross_kv(vl_features), self.conditioning(timesteps), output_tokens,
                              cross_masks)


class SelfAttentionTransformer(nn.Module):
    """Plain pre-LN self-attention blocks over the VL features (`action_head.vl_self_attention`)."""

    def __init__(self, cfg: VLSelfAttentionConfig):
        super().__init__()
        self.transformer_blocks = nn.ModuleList(VLSelfAttentionBlock(cfg) for _ in range(cfg.num_layers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [B, L, D] -> [B, L, D]"""
        for block in self.transformer_blocks:
            x = block(x)
        return x
