"""SigLIP vision transformer with the checkpoint's parameter names (`vision_model.vision_model.*`).

Pre-norm ViT: conv patch embedding + learned absolute positions, N encoder layers (LayerNorm ->
multi-head attention, LayerNorm -> GELU(tanh) MLP), final `post_layernorm`. The attention-pooling `head`
exists in the N1.5 state dict but GR00T never uses its output; it is built only when
`VisionConfig.with_pooling_head` so checkpoints load key for key.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from groot.model.config import VisionConfig
from groot.model.layers import init_weights


class SiglipEmbeddings(nn.Module):
    def __init__(self, cfg: VisionConfig):
        super().__init__()
        self.patch_embedding = nn.Conv2d(3, cfg.hidden_size, cfg.patch_size, stride=cfg.patch_size)
        self.position_embedding = nn.Embedding(cfg.num_patches, cfg.hidden_size)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """pixel_values: [N, 3, S, S] -> [N, P, C] with P = (S / patch)^2"""
        patches = self.patch_embedding(pixel_values.to(self.patch_embedding.weight.dtype))  # [N, C, S/p, S/p]
        patches = patches.flatten(2).transpose(1, 2)  # [N, P, C]
        expected = self.position_embedding.num_embeddings
        if patches.shape[1] != expected:
            raise ValueError(f"SigLIP: images of {tuple(pixel_values.shape[-2:])} give {patches.shape[1]} "
                             f"patches, expected {expected} (resize to the model's image size)")
        return patches + self.position_embedding.weight[None]


class SiglipAttention(nn.Module):
    def __init__(self, cfg: VisionConfig):
        super().__init__()
        self.num_heads = cfg.num_heads
        self.q_proj = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.k_proj = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.v_proj = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.out_proj = nn.Linear(cfg.hidden_size, cfg.hidden_size)

    def project_qkv(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x: [N, P, C] -> q, k, v, each [N, P, C]"""
        return self.q_proj(x), self.k_proj(x), self.v_proj(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [N, P, C] -> [N, P, C] (bidirectional, no mask)"""
        n, p, c = x.shape

        def heads(t: torch.Tensor) -> torch.Tensor:  # [N, P, C] -> [N, H, P, C/H]
            return t.view(n, p, self.num_heads, c // self.num_heads).transpose(1, 2)

        q, k, v = (heads(t) for t in self.project_qkv(x))
        out = F.scaled_dot_product_attention(q, k, v)  # [N, H, P, C/H]
        return self.out_proj(out.transpose(1, 2).reshape(n, p, c))


class SiglipMLP(nn.Module):
    def __init__(self, cfg: VisionConfig):
        super().__init__()
        self.fc1 = nn.Linear(cfg.hidden_size, cfg.intermediate_size)
        self.fc2 = nn.Linear(cfg.intermediate_size, cfg.hidden_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x), approximate="tanh"))


class SiglipEncoderLayer(nn.Module):
    def __init__(self, cfg: VisionConfig):
        super().__init__()
        self.layer_norm1 = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.self_attn = SiglipAttention(cfg)
        self.layer_norm2 = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.mlp = SiglipMLP(cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.self_attn(self.layer_norm1(x))
        return x + self.mlp(self.layer_norm2(x))


class SiglipEncoder(nn.Module):
    def __init__(self, cfg: VisionConfig):
        super().__init__()
        self.layers = nn.ModuleList(SiglipEncoderLayer(cfg) for _ in range(cfg.num_layers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        return x


class SiglipPoolingHead(nn.Module):
    """Attention pooling with one learned probe query (kept for checkpoint compatibility)."""

    def __init__(self, cfg: VisionConfig):
        super().__init__()
        self.probe = nn.Parameter(torch.zeros(1, 1, cfg.hidden_size))
        self.attention = nn.MultiheadAttention(cfg.hidden_size, cfg.num_heads, batch_first=True)
        self.layernorm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.mlp = SiglipMLP(cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [N, P, C] -> pooled [N, C]"""
        probe = self.probe.expand(x.shape[0], -1, -1)
        pooled = self.attention(probe, x, x, need_weights=False)[0]  # [N, 1, C]
        pooled = pooled + self.mlp(self.layernorm(pooled))
        return pooled[:, 0]


class SiglipTransformer(nn.Module):
    def __init__(self, cfg: VisionConfig):
        super().__init__()
        self.embeddings = SiglipEmbeddings(cfg)
        self.encoder = SiglipEncoder(cfg)
        self.post_layernorm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.head = SiglipPoolingHead(cfg) if cfg.with_pooling_head else None

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """pixel_values: [N, 3, S, S] -> last_hidden_state [N, P, C] (after post_layernorm)"""
        return self.post_layernorm(self.encoder(self.embeddings(pixel_values)))


class SiglipVisionModel(nn.Module):
    """The wrapper level of the checkpoint path: `vision_model` (this) `.vision_model` (transformer)."""

    def __init__(self, cfg: VisionConfig):
        super().__init__()
        self.vision_model = SiglipTransformer(cfg)
        init_weights(self)
        if self.vision_model.head is not None:
            nn.init.normal_(self.vision_model.head.probe, std=0.02)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """pixel_values: [N, 3, S, S] in [-1, 1] -> [N, P, C]  (N1.5: [N, 256, 1152])"""
        return self.vision_model(pixel_values)
