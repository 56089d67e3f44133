"""The flow-SDE step: the GR00T flow-matching ODE turned into a stochastic policy (Flow-GRPO / piRL).

GR00T integrates from noise at t = 0 to data at t = 1 on the grid t_k = k / K (Delta = 1 / K). With
the velocity v = f(x_t, t), x_noise = x_t - t v and x_data = x_t + (1 - t) v:

    deterministic: x_{k+1} = x_t + Delta v                                  (std 0, the ODE / Euler step)
    flow-SDE:      sigma_k = a sqrt((1 - t_k) / t_k)       (t_0 replaced by t_1: no division by zero)
                   mean    = x_noise (1 - (t + Delta) - sigma_k^2 Delta / (2 (1 - t))) + x_data (t + Delta)
                   std     = sqrt(Delta) sigma_k,   x_{k+1} = mean + std eps,  eps ~ N(0, I)

a is the noise level. Everything here is float32 math on tensors; t may be a float or a per-row tensor
[B, 1, 1], so a batch can mix denoising steps.
"""

from __future__ import annotations

import math

import torch

LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)


def step_time(step: int | torch.Tensor, num_steps: int) -> float | torch.Tensor:
    """t_k = k / K (k: int or int64 tensor)."""
    return step / num_steps


def sde_sigma(t: float | torch.Tensor, num_steps: int, noise_level: float) -> float | torch.Tensor:
    """sigma_k = a sqrt((1 - t) / t), with t = 0 replaced by t_1 = 1 / K."""
    dt = 1.0 / num_steps
    if isinstance(t, torch.Tensor):
        t = torch.where(t == 0, torch.full_like(t, dt), t)
        return noise_level * torch.sqrt((1 - t) / t)
    t = dt if t == 0 else t
    return noise_level * math.sqrt((1 - t) / t)


def sde_moments(
    x: torch.Tensor, velocity: torch.Tensor, t: float | torch.Tensor, num_steps: int, noise_level: float
) -> tuple[torch.Tensor, float | torch.Tensor]:
    """Mean and std of the flow-SDE transition from x_t. x, velocity [B, T, A]; t a float or [B, 1, 1]
    -> (mean [B, T, A] float32, std: float or [B, 1, 1] float32)."""
    x, velocity = x.float(), velocity.float()
    if isinstance(t, torch.Tensor):
        t = t.float()
    dt = 1.0 / num_steps
    sigma = sde_sigma(t, num_steps, noise_level)
    x_noise = x - t * velocity
    x_data = x + (1 - t) * velocity
    mean = x_noise * (1 - (t + dt) - sigma**2 * dt / (2 * (1 - t))) + x_data * (t + dt)
    std = math.sqrt(dt) * sigma
    return mean, std


def euler_step(x: torch.Tensor, velocity: torch.Tensor, num_steps: int) -> torch.Tensor:
    """The deterministic step exactly as `FlowMatchingActionHead.integrate` computes it (same dtype and
    operation order, so a chain of these is bit-identical to the model's sampler)."""
    return x + (1.0 / num_steps) * velocity


def normal_log_prob(x: torch.Tensor, mean: torch.Tensor, std: float | torch.Tensor) -> torch.Tensor:
    """Elementwise log N(x; mean, std^2) = -log std - log sqrt(2 pi) - ((x - mean) / std)^2 / 2, float32."""
    std = torch.as_tensor(std, dtype=torch.float32, device=mean.device)
    z = (x.float() - mean.float()) / std
    return -torch.log(std) - LOG_SQRT_2PI - 0.5 * z * z


def chunk_log_prob(
    x: torch.Tensor, mean: torch.Tensor, std: float | torch.Tensor, executed_steps: int, action_dim: int
) -> torch.Tensor:
    """log N summed over the first `executed_steps` timesteps and the first `action_dim` action columns
    (the chunk the environment executes, in the embodiment's real dimensions).
    x, mean [B, T, A], std float or [B, 1, 1] -> [B] float32"""
    log_p = normal_log_prob(x[:, :executed_steps, :action_dim], mean[:, :executed_steps, :action_dim], std)
    return log_p.sum(dim=(1, 2))
