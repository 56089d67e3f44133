"""The clipped PPO objective (with dual clip) and the clipped value loss, on chunk-level transitions.

Every tensor is [B] (one entry per transition: a chunk), and losses are means over the B entries
("token-mean" at chunk level). Both losses are computed in float32 whatever the dtype of their inputs
(bf16 under autocast); gradients flow back in the inputs' dtype."""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F


@dataclasses.dataclass(frozen=True)
class PPOLossConfig:
    clip_low: float = 0.2  # ratio >= 1 - clip_low
    clip_high: float = 0.2  # ratio <= 1 + clip_high
    dual_clip: float = 3.0  # c: for A < 0 the loss is at most -c A (<= 1: off)
    clip_log_ratio: float | None = None  # clamp log(ratio) to [-x, x] before exp (N1.6 recipe: 20)
    value_clip: float = 0.2  # new value within old +- value_clip for the clipped branch
    huber_delta: float = 10.0


def policy_loss(
    log_prob: torch.Tensor, old_log_prob: torch.Tensor, advantages: torch.Tensor, cfg: PPOLossConfig
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """-> (loss, {"clip_fraction", "approx_kl", "ratio"}).

    r = exp(new - old); L = max(-A r, -A clip(r, 1 - lo, 1 + hi)), and for A < 0 min(L, -c A)."""
    log_prob, old_log_prob, advantages = log_prob.float(), old_log_prob.float(), advantages.float()
    log_ratio = log_prob - old_log_prob
    if cfg.clip_log_ratio is not None:
        log_ratio = log_ratio.clamp(-cfg.clip_log_ratio, cfg.clip_log_ratio)
    ratio = torch.exp(log_ratio)
    unclipped = -advantages * ratio
    clipped = -advantages * ratio.clamp(1 - cfg.clip_low, 1 + cfg.clip_high)
    loss = torch.maximum(unclipped, clipped)
    if cfg.dual_clip > 1:
        loss = torch.where(advantages < 0, torch.minimum(loss, -cfg.dual_clip * advantages), loss)
    with torch.no_grad():
        stats = {
            "clip_fraction": (clipped > unclipped).float().mean(),
            "approx_kl": ((ratio - 1) - log_ratio).mean(),  # k3 estimate of KL(old || new)
            "ratio": ratio.mean(),
        }
    return loss.mean(), stats


def value_loss(
    values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor, cfg: PPOLossConfig
) -> torch.Tensor:
    """max(huber(R - V), huber(R - clip(V, V_old - c, V_old + c))), averaged."""
    values, old_values, returns = values.float(), old_values.float(), returns.float()
    clipped = old_values + (values - old_values).clamp(-cfg.value_clip, cfg.value_clip)
    plain = F.huber_loss(values, returns, reduction="none", delta=cfg.huber_delta)
    clipped_loss = F.huber_loss(clipped, returns, reduction="none", delta=cfg.huber_delta)
    return torch.maximum(plain, clipped_loss).mean()
