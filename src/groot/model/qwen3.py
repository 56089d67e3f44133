"""Qwen3 decoder (truncated to the kept layers) with the checkpoint's parameter names.

`Qwen3LanguageModel` is the `language_model` level: `.model` (embeddings, layers, final norm) and
`.lm_head` (tied to `model.embed_tokens`; present only so the state dict has the key — GR00T never
computes logits). Pre-norm layers: RMSNorm -> GQA attention with per-head q/k RMSNorm before RoPE ->
residual; RMSNorm -> SiLU-gated MLP -> residual. Positions are 0..L-1 for every row regardless of
left padding (spec 2.2); the forward returns the final-norm output (spec 14.1).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from groot.model.config import LLMConfig
from groot.model.layers import (
    RMSNorm,
    apply_rotary,
    causal_padding_mask,
    init_weights,
    rotary_cos_sin,
)

# SDPA reads grouped K/V heads itself with `enable_gqa` (torch >= 2.5). The CPU kernels honour it with
# or without a mask; on CUDA only the flash kernel (fp16 / bf16, no mask) does, and with a padding mask
# or in float32 the call would fall back to the unfused math kernel. Those calls (and other devices)
# expand K/V to one head per query head instead.
SDPA_HAS_GQA = torch.__version__ >= "2.5"
_FLASH_DTYPES = (torch.float16, torch.bfloat16)


def _sdpa_reads_grouped_heads(q: torch.Tensor, mask: torch.Tensor | None) -> bool:
    if not SDPA_HAS_GQA:
        return False
    if q.device.type == "cpu":
        return True
    return q.device.type == "cuda" and mask is None and q.dtype in _FLASH_DTYPES


def grouped_query_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                            mask: torch.Tensor | None) -> torch.Tensor:
    """q: [B, H, L, hd], k / v: [B, H_kv, L, hd] (H a multiple of H_kv; query head h reads K/V head
    h // (H / H_kv)), mask: bool [B, 1, L, L] or None (causal) -> [B, H, L, hd]"""
    if _sdpa_reads_grouped_heads(q, mask):
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=mask is None,
                                              enable_gqa=True)
    groups = q.shape[1] // k.shape[1]
    k, v = k.repeat_interleave(groups, dim=1), v.repeat_interleave(groups, dim=1)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=mask is None)


class Qwen3Attention(nn.Module):
    def __init__(self, cfg: LLMConfig):
        super().__init__()
        self.num_heads, self.num_kv_heads, self.head_dim = cfg.num_heads, cfg.num_kv_heads, cfg.head_dim
        self.q_proj = nn.Linear(cfg.hidden_size, cfg.num_heads * cfg.head_dim, bias=False)
        self.k_proj = nn.Linear(cfg.hidden_size, cfg.num_kv_heads * cfg.head_dim, bias=False)
        self.v_proj = nn.Linear(cfg.hidden_size, cfg.num_kv_heads * cfg.head_dim, bias=False)
        self.o_proj = nn.Linear(cfg.num_heads * cfg.head_dim, cfg.hidden_size, bias=False)
        self.q_norm = RMSNorm(cfg.head_dim, cfg.rms_norm_eps)
        self.k_norm = RMSNorm(cfg.head_dim, cfg.rms_norm_eps)

    def project_qkv(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x: [B, L, D] -> q [B, L, H*hd], k / v [B, L, H_kv*hd]"""
        return self.q_proj(x), self.k_proj(x), self.v_proj(x)

    def forward(self, x: torch.Tensor, rotary: tuple[torch.Tensor, torch.Tensor],
                mask: torch.Tensor | None) -> torch.Tensor:
        """x: [B, L, D], rotary cos/sin: [L, head_dim], mask: bool [B, 1, L, L] | None (causal)
        -> [B, L, D]"""
        b, length, _ = x.shape
        q, k, v = self.project_qkv(x)
        q = self.q_norm(q.view(b, length, self.num_heads, self.head_dim)).transpose(1, 2)
        k = self.k_norm(k.view(b, length, self.num_kv_heads, self.head_dim)).transpose(1, 2)
        v = v.view(b, length, self.num_kv_heads, self.head_dim).transpose(1, 2)
        q, k = apply_rotary(q, *rotary), apply_rotary(k, *rotary)  # [B, H(kv), L, head_dim]
        out = grouped_query_attention(q, k, v, mask)  # [B, H, L, head_dim]
        return self.o_proj(out.transpose(1, 2).reshape(b, length, self.num_heads * self.head_dim))


class Qwen3MLP(nn.Module):
    def __init__(self, cfg: LLMConfig):
        super().__init__()
        self.gate_proj = nn.Linear(cfg.hidden_size, cfg.intermediate_size, bias=False)
        self.up_proj = nn.Linear(cfg.hidden_size, cfg.intermediate_size, bias=False)
        self.down_proj = nn.Linear(cfg.intermediate_size, cfg.hidden_size, bias=False)

    def project_gate_up(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x: [B, L, D] -> gate, up, each [B, L, intermediate_size]"""
        return self.gate_proj(x), self.up_proj(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.project_gate_up(x)
        return self.down_proj(F.silu(gate) * up)


class Qwen3DecoderLayer(nn.Module):
    def __init__(self, cfg: LLMConfig):
        super().__init__()
        self.input_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.self_attn = Qwen3Attention(cfg)
        self.post_attention_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.mlp = Qwen3MLP(cfg)

    def forward(self, x: torch.Tensor, rotary: tuple[torch.Tensor, torch.Tensor],
                mask: torch.Tensor | None, token_rows: torch.Tensor | None) -> torch.Tensor:
        """token_rows: [B, L, 1] (1 = token, 0 = padding) zeroes the padding rows' attention output."""
        attn = self.self_attn(self.input_layernorm(x), rotary, mask)
        if token_rows is not None:
            attn = attn * token_rows
        x = x + attn
        return x + self.mlp(self.post_attention_layernorm(x))


class Qwen3Model(nn.Module):
    def __init__(self, cfg: LLMConfig):
        super().__init__()
        self.cfg = cfg
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        self.layers = nn.ModuleList(Qwen3DecoderLayer(cfg) for _ in range(cfg.num_layers))
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)

    def forward(self, inputs_embeds: torch.Tensor,
                attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """inputs_embeds: [B, L, D], attention_mask: [B, L] (1 = token, 0 = left padding) or None
        -> final-norm hidden states [B, L, D].

        Padding rows get a zero attention output in every layer (what flash-attention's unpadded kernels
        produce in the original), so they stay finite and depend only on their own token.
        """
        length = inputs_embeds.shape[1]
        positions = torch.arange(length, device=inputs_embeds.device)
        rotary = rotary_cos_sin(positions, self.cfg.head_dim, self.cfg.rope_theta, inputs_embeds.dtype)
        mask = token_rows = None
        if attention_mask is not None:
            mask = causal_padding_mask(attention_mask)  # [B, 1, L, L]
            token_rows = attention_mask[:, :, None].to(inputs_embeds.dtype)  # [B, L, 1]
        x = inputs_embeds
        for layer in self.layers:
            x = layer(x, rotary, mask, token_rows)
        return self.norm(x)


class Qwen3LanguageModel(nn.Module):
    """`language_model`: the decoder plus the (tied, unused) `lm_head`."""

    def __init__(self, cfg: LLMConfig):
        super().__init__()
        self.model = Qwen3Model(cfg)
        self.lm_head = nn.Linear(cfg.hidden_size, cfg.vocab_size, bias=False)
        init_weights(self)
        if cfg.tie_word_embeddings:
            self.lm_head.weight = self.model.embed_tokens.weight

    def forward(self, inputs_embeds: torch.Tensor,
                attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """[B, L, D], [B, L] -> final-norm hidden states [B, L, D]"""
        return self.model(inputs_embeds, attention_mask)
