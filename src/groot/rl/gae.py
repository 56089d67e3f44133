"""Generalized advantage estimation over chunk-level transitions (gamma 0.99, lambda 0.95 by default)."""

from __future__ import annotations

import torch


def compute_gae(
    rewards: torch.Tensor,
    values: torch.Tensor,
    dones: torch.Tensor,
    gamma: float = 0.99,
    lam: float = 0.95,
    last_values: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """rewards, values, dones [T, N] (done: the episode ended with transition t), last_values [N]: the
    value after the last transition (default 0) -> (advantages [T, N], returns = advantages + values).

    delta_t = r_t + gamma V_{t+1} (1 - d_t) - V_t,  A_t = delta_t + gamma lam (1 - d_t) A_{t+1}."""
    steps = rewards.shape[0]
    next_value = torch.zeros_like(values[0]) if last_values is None else last_values.to(values.dtype)
    advantage = torch.zeros_like(values[0])
    advantages = torch.zeros_like(values)
    for t in reversed(range(steps)):
        alive = 1.0 - dones[t].to(values.dtype)
        delta = rewards[t] + gamma * next_value * alive - values[t]
        advantage = delta + gamma * lam * alive * advantage
        advantages[t] = advantage
        next_value = values[t]
    return advantages, advantages + values


def normalize_advantages(advantages: torch.Tensor, valid: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """(A - mean) / (std + eps) over the valid entries; invalid entries become 0."""
    chosen = advantages[valid]
    std = chosen.std(unbiased=False) if chosen.numel() > 1 else torch.zeros((), dtype=advantages.dtype)
    normalized = (advantages - chosen.mean()) / (std + eps)
    return torch.where(valid, normalized, torch.zeros_like(normalized))
