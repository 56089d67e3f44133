"""SigLIP vision transformer with the checkpoint's parameter names (`vision_model.vision_model.*`).

Pre-norm ViT: patch embedding (N1.5: conv; N1.6, SigLIP2-style: linear, positions resized to each
image's grid) + learned absolute positions, N encoder layers (LayerNorm ->
multi-head attention, LayerNorm -> GELU(tanh) MLP), final `post_layernorm`. The attention-pooling `head`
exists in the N1.5 state dict but GR00T never uses its output; it is built only when
`VisionConfig.with_pooling_head` so checkpoints load key for key.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from groot.model.config import VisionConfig
from groot.model.layers import init_weights


class SiglipEmbeddings(nn.Module):
    """Patch embedding + learned positions.

    N1.5 (SigLIP): a Conv2d patch embedding and one position per patch of the fixed square image.
    N1.6 (`linear_patch_embedding`, SigLIP2): each patch flattened in (row, column, channel) order
    through a Linear. With `native_resolution` the position table, read as a square grid, is resized
    bilinearly (antialiased) to the image's own patch grid, so any size that is a multiple of the patch
    size is accepted."""

    def __init__(self, cfg: VisionConfig):
        super().__init__()
        self.patch_size = cfg.patch_size
        self.native_resolution = cfg.native_resolution
        if cfg.linear_patch_embedding:
            self.patch_embedding = nn.Linear(3 * cfg.patch_size**2, cfg.hidden_size)
        else:
            self.patch_embedding = nn.Conv2d(3, cfg.hidden_size, cfg.patch_size, stride=cfg.patch_size)
        self.position_embedding = nn.Embedding(cfg.num_patches, cfg.hidden_size)

    def embed_patches(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """pixel_values: [N, 3, H, W] -> [N, (H/p) * (W/p), C], patches row-major"""
        pixels = pixel_values.to(self.patch_embedding.weight.dtype)
        if isinstance(self.patch_embedding, nn.Conv2d):
            return self.patch_embedding(pixels).flatten(2).transpose(1, 2)
        n, c, h, w = pixels.shape
        p = self.patch_size
        patches = pixels.view(n, c, h // p, p, w // p, p).permute(0, 2, 4, 3, 5, 1)  # [N, h, w, p, p, 3]
        return self.patch_embedding(patches.reshape(n, (h // p) * (w // p), p * p * c))

    def positions(self, grid: tuple[int, int]) -> torch.Tensor:
        """The position table for a (rows, cols) patch grid -> [rows * cols, C]"""
        table = self.position_embedding.weight
        side = math.isqrt(table.shape[0])
        if grid == (side, side):
            return table
        square = table.T.reshape(1, -1, side, side)  # [1, C, side, side]
        if square.device.type == "cpu":
            square = square.float()
        resized = F.interpolate(square, size=grid, mode="bilinear", align_corners=False, antialias=True)
        return resized.to(table.dtype).flatten(2)[0].T  # [rows * cols, C]

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """pixel_values: [N, 3, H, W] -> [N, P, C] with P = (H / patch) * (W / patch)"""
        h, w = pixel_values.shape[-2:]
        if h % self.patch_size or w % self.patch_size:
            raise ValueError(f"SigLIP: image size {(h, w)} is not a multiple of the patch size "
                             f"{self.patch_size}")
        patches = self.embed_patches(pixel_values)  # [N, P, C]
        grid = (h // self.patch_size, w // self.patch_size)
        if not self.native_resolution and patches.shape[1] != self.position_embedding.num_embeddings:
            raise ValueError(f"SigLIP: images of {(h, w)} give {patches.shape[1]} patches, expected "
                             f"{self.position_embedding.num_embeddings} (resize to the model's image size)")
        return patches + self.positions(grid)[None]


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
        """pixel_values: [N, 3, H, W] -> last_hidden_state [N, P, C] (after post_layernorm); each image
        attends within itself only"""
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
