"""GAE against a direct computation; the PPO and value losses on hand-made numbers."""

from __future__ import annotations

import pytest
import torch

from groot.rl.gae import compute_gae, normalize_advantages
from groot.rl.ppo import PPOLossConfig, policy_loss, value_loss


def _direct_gae(rewards, values, dones, gamma, lam):
    """A_t = sum_l (gamma lam)^l delta_{t+l}, stopping after the first done."""
    steps, envs = rewards.shape
    out = torch.zeros(steps, envs)
    for n in range(envs):
        for t in range(steps):
            total, factor = 0.0, 1.0
            for u in range(t, steps):
                next_value = 0.0 if (dones[u, n] or u + 1 == steps) else values[u + 1, n]
                delta = rewards[u, n] + gamma * next_value - values[u, n]
                total += factor * delta
                if dones[u, n]:
                    break
                factor *= gamma * lam
            out[t, n] = total
    return out


def test_gae_matches_the_direct_sum():
    g = torch.Generator().manual_seed(0)
    rewards = (torch.rand(7, 3, generator=g) > 0.7).float()
    values = torch.rand(7, 3, generator=g)
    dones = torch.zeros(7, 3, dtype=torch.bool)
    dones[2, 0] = dones[6, 1] = dones[4, 2] = True
    advantages, returns = compute_gae(rewards, values, dones, gamma=0.99, lam=0.95)
    expected = _direct_gae(rewards, values, dones, 0.99, 0.95)
    torch.testing.assert_close(advantages, expected)
    torch.testing.assert_close(returns, expected + values)


def test_gae_single_success_reward_by_hand():
    rewards = torch.tensor([[0.0], [0.0], [1.0]])
    values = torch.tensor([[0.5], [0.6], [0.7]])
    dones = torch.tensor([[False], [False], [True]])
    advantages, _ = compute_gae(rewards, values, dones, gamma=0.5, lam=0.5)
    d2 = 1.0 - 0.7
    d1 = 0.0 + 0.5 * 0.7 - 0.6
    d0 = 0.0 + 0.5 * 0.6 - 0.5
    expected = torch.tensor([[d0 + 0.25 * d1 + 0.0625 * d2], [d1 + 0.25 * d2], [d2]])
    torch.testing.assert_close(advantages, expected)


def test_normalize_advantages_ignores_invalid_entries():
    advantages = torch.tensor([1.0, 3.0, 100.0, 5.0])
    valid = torch.tensor([True, True, False, True])
    out = normalize_advantages(advantages, valid)
    std = torch.tensor([1.0, 3.0, 5.0]).std(unbiased=False)
    torch.testing.assert_close(out, torch.tensor([-2 / std, 0.0, 0.0, 2 / std]))


CFG = PPOLossConfig(clip_low=0.2, clip_high=0.2, dual_clip=3.0, value_clip=0.2, huber_delta=10.0)


@pytest.mark.parametrize(
    "ratio,advantage,expected,clipped",
    [
        (1.1, 1.0, -1.1, False),  # inside the trust region
        (1.5, 1.0, -1.2, True),  # A > 0: ratio clipped at 1.2
        (0.5, 1.0, -0.5, False),  # A > 0, ratio below: the unclipped (smaller) objective
        (0.5, -1.0, 0.8, True),  # A < 0: ratio clipped at 0.8
        (2.0, -1.0, 2.0, False),  # A < 0, ratio above: unclipped, under the dual clip 3
        (5.0, -1.0, 3.0, False),  # A < 0: the dual clip caps the loss at c |A|
    ],
)
def test_policy_loss_on_hand_made_numbers(ratio, advantage, expected, clipped):
    old = torch.tensor([0.3])
    new = old + torch.log(torch.tensor([ratio]))
    loss, stats = policy_loss(new, old, torch.tensor([advantage]), CFG)
    assert float(loss) == pytest.approx(expected, rel=1e-5)
    assert float(stats["clip_fraction"]) == float(clipped)
    k3 = ratio - 1 - torch.log(torch.tensor(ratio)).item()
    assert float(stats["approx_kl"]) == pytest.approx(k3, rel=1e-5)


def test_policy_loss_gradient_vanishes_when_clipped():
    old = torch.zeros(2)
    new = torch.log(torch.tensor([1.5, 1.1])).requires_grad_()
    loss, _ = policy_loss(new, old, torch.tensor([1.0, 1.0]), CFG)
    loss.backward()
    torch.testing.assert_close(new.grad, torch.tensor([0.0, -1.1 / 2]))


def test_clip_log_ratio_bounds_the_ratio():
    cfg = PPOLossConfig(clip_log_ratio=1.0, dual_clip=0.0)
    loss, stats = policy_loss(torch.tensor([50.0]), torch.tensor([0.0]), torch.tensor([-1.0]), cfg)
    assert float(stats["ratio"]) == pytest.approx(torch.e, rel=1e-5) and float(loss) == pytest.approx(torch.e)


def test_value_loss_clipping_and_huber():
    old = torch.tensor([0.0, 0.0, 0.0])
    new = torch.tensor([0.5, 0.1, 0.5])
    returns = torch.tensor([1.0, 1.0, -1.0])
    loss = value_loss(new, old, returns, CFG)
    # row 0: plain (0.5)^2/2=0.125, clipped to 0.2 -> 0.32 -> max 0.32; row 1: clip has no effect -> 0.405;
    # row 2: plain 1.5^2/2=1.125, clipped 1.2^2/2=0.72 -> 1.125
    assert float(loss) == pytest.approx((0.32 + 0.405 + 1.125) / 3)
    huber = value_loss(
        torch.tensor([0.0]),
        torch.tensor([0.0]),
        torch.tensor([30.0]),
        PPOLossConfig(value_clip=100.0, huber_delta=10.0),
    )
    assert float(huber) == pytest.approx(10.0 * (30.0 - 5.0))


def test_losses_take_bf16_autocast_outputs_beside_float32_targets():
    """Under bf16 autocast the value head and the log-probability come out in bf16 while the rollout's
    returns, advantages and old values are float32: both losses run forward and backward, in float32,
    and equal the all-float32 computation on the same (bf16-representable) numbers."""
    cfg = PPOLossConfig()
    values = torch.tensor([0.5, -1.25, 3.0], dtype=torch.bfloat16, requires_grad=True)
    log_prob = torch.tensor([-1.5, -0.75, -2.0], dtype=torch.bfloat16, requires_grad=True)
    old_values, returns = torch.tensor([0.25, -1.0, 2.0]), torch.tensor([1.0, 0.0, 2.5])
    old_log_prob, advantages = torch.tensor([-1.25, -1.0, -2.0]), torch.tensor([1.0, -0.5, 2.0])

    v_loss = value_loss(values, old_values, returns, cfg)
    pg_loss, _ = policy_loss(log_prob, old_log_prob, advantages, cfg)
    (v_loss + pg_loss).backward()

    assert v_loss.dtype == pg_loss.dtype == torch.float32
    assert values.grad.dtype == log_prob.grad.dtype == torch.bfloat16
    torch.testing.assert_close(v_loss, value_loss(values.detach().float(), old_values, returns, cfg))
    expected_pg, _ = policy_loss(log_prob.detach().float(), old_log_prob, advantages, cfg)
    torch.testing.assert_close(pg_loss, expected_pg)
