"""The critic: one value per action chunk from the mean VL feature and the state-encoder features."""

from __future__ import annotations

import torch
from torch import nn


class ValueHead(nn.Module):
    """MLP in_dim -> hidden... -> 1 with ReLU between layers; hidden layers without bias, the output
    layer with one (the reference critic: 3584 -> 1024 -> 512 -> 256 -> 1 for the 3B model).
    Inputs are float32 features the caller has detached from the policy."""

    def __init__(self, in_dim: int, hidden: tuple[int, ...] = (1024, 512, 256)):
        super().__init__()
        layers: list[nn.Module] = []
        width = in_dim
        for size in hidden:
            layers += [nn.Linear(width, size, bias=False), nn.ReLU()]
            width = size
        layers.append(nn.Linear(width, 1))
        self.mlp = nn.Sequential(*layers)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """features [B, in_dim] -> values [B] float32"""
        return self.mlp(features.float()).squeeze(-1)


def value_features(
    vl: torch.Tensor, attention_mask: torch.Tensor, state_tokens: torch.Tensor
) -> torch.Tensor:
    """The critic's input, detached: concat(mean of the VL tokens the prompt really has (attention_mask),
    flattened state tokens). vl [B, L, D] (after `encode_vl`), attention_mask [B, L], state_tokens
    [B, 1, W] -> [B, D + W] float32"""
    mask = attention_mask.to(torch.float32)[..., None]  # [B, L, 1]
    mean_vl = (vl.detach().float() * mask).sum(1) / mask.sum(1).clamp(min=1.0)
    return torch.cat([mean_vl, state_tokens.detach().float().flatten(1)], dim=-1)
