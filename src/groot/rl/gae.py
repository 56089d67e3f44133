"""Generalized advantage estimation over chunk-level transitions (gamma 0.99, lambda 0.95 by default)."""

from __future__ import annotations

import math

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


def advantage_moments(advantages: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """float64 [3]: count, sum and sum of squares of the valid entries (add them up across processes)."""
    chosen = advantages[valid].double()
    count = torch.tensor(float(chosen.numel()), dtype=torch.float64)
    return torch.stack([count, chosen.sum(), chosen.square().sum()])


def normalize_advantages(advantages: torch.Tensor, valid: torch.Tensor, eps: float = 1e-8,
                         moments: torch.Tensor | None = None) -> torch.Tensor:
    """(A - mean) / (std + eps), with the mean and population std of `moments` (`advantage_moments`, e.g.
    summed over processes; default: the valid entries' own); invalid entries become 0."""
    count, total, squares = (advantage_moments(advantages, valid) if moments is None else moments).tolist()
    mean = total / max(count, 1.0)
    std = math.sqrt(max(squares / count - mean * mean, 0.0)) if count > 1 else 0.0
    normalized = (advantages - mean) / (std + eps)
    return torch.where(valid, normalized, torch.zeros_like(normalized))
