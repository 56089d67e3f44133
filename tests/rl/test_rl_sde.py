"""The flow-SDE step and the actor's sampler against the formula, torch's Normal and the model's sampler."""

from __future__ import annotations

import math

import pytest
import torch

from groot.model.gr00t_n15 import GR00TN15
from groot.model.gr00t_n16 import GR00TN16
from groot.model.synthetic_batch import synthetic_batch
from groot.rl.actor import ActorCritic, SamplerConfig
from groot.rl.sde import chunk_log_prob, normal_log_prob, sde_moments, sde_sigma


@pytest.mark.parametrize("k", [0, 1, 2, 3])
def test_sde_moments_follow_the_formula(k):
    g = torch.Generator().manual_seed(k)
    x, v = torch.randn(2, 16, 32, generator=g), torch.randn(2, 16, 32, generator=g)
    K, a, t, dt = 4, 0.5, k / 4, 0.25
    mean, std = sde_moments(x, v, t, K, a)
    t_sigma = dt if k == 0 else t
    sigma = a * math.sqrt((1 - t_sigma) / t_sigma)
    expected = (x - t * v) * (1 - (t + dt) - sigma**2 * dt / (2 * (1 - t))) + (x + (1 - t) * v) * (t + dt)
    torch.testing.assert_close(mean, expected, rtol=0, atol=1e-6)
    assert std == pytest.approx(math.sqrt(dt) * sigma)
    assert sde_sigma(t, K, a) == pytest.approx(sigma)


def test_per_row_times_equal_scalar_times():
    g = torch.Generator().manual_seed(1)
    x, v = torch.randn(4, 16, 32, generator=g), torch.randn(4, 16, 32, generator=g)
    t = torch.tensor([0.0, 0.25, 0.5, 0.75])[:, None, None]
    mean, std = sde_moments(x, v, t, 4, 0.7)
    for row in range(4):
        row_mean, row_std = sde_moments(x[row : row + 1], v[row : row + 1], row / 4, 4, 0.7)
        torch.testing.assert_close(mean[row : row + 1], row_mean)
        assert float(std[row]) == pytest.approx(row_std)


def test_zero_noise_level_sde_mean_is_the_euler_step():
    g = torch.Generator().manual_seed(2)
    x, v = torch.randn(2, 16, 32, generator=g), torch.randn(2, 16, 32, generator=g)
    mean, std = sde_moments(x, v, 0.5, 4, 0.0)
    torch.testing.assert_close(mean, x + 0.25 * v, rtol=0, atol=1e-6)
    assert std == 0


def test_log_prob_matches_torch_normal_over_the_executed_span():
    g = torch.Generator().manual_seed(3)
    x, mean = torch.randn(3, 16, 32, generator=g), torch.randn(3, 16, 32, generator=g)
    std = torch.tensor([0.3, 0.5, 1.2])[:, None, None]
    expected = torch.distributions.Normal(mean, std.expand_as(mean)).log_prob(x)
    torch.testing.assert_close(normal_log_prob(x, mean, std), expected)
    span = chunk_log_prob(x, mean, std, executed_steps=5, action_dim=7)
    torch.testing.assert_close(span, expected[:, :5, :7].sum((1, 2)))


def _actor(model_class=GR00TN15, preset="tiny", **sampler):
    torch.manual_seed(0)
    model = model_class.from_preset(preset)
    return ActorCritic(model, SamplerConfig(**sampler), value_hidden=(32, 16))


@pytest.mark.parametrize("model_class,preset", [(GR00TN15, "tiny"), (GR00TN16, "n1.6-tiny")])
def test_zero_noise_level_reproduces_get_action_bit_for_bit(model_class, preset):
    actor = _actor(model_class, preset, noise_level=0.0)
    batch = synthetic_batch(actor.model.config, batch=2)
    cfg = actor.model.config.action_head_cfg
    noise = torch.randn(2, cfg.action_horizon, cfg.action_dim, generator=torch.Generator().manual_seed(5))
    expected = actor.model.get_action(batch, num_steps=4, noise=noise)["action_pred"]
    out = actor.act(batch, noise=noise)
    assert torch.equal(out.actions, expected)
    assert not out.stochastic.any() and torch.equal(out.log_prob, torch.zeros(2))
    assert torch.equal(actor.act(batch, noise=noise, deterministic=True).actions, expected)


def test_one_random_step_is_stochastic_and_evaluate_recomputes_its_log_prob():
    actor = _actor(noise_level=0.5)
    batch = synthetic_batch(actor.model.config, batch=3)
    chosen = set()
    for seed in range(12):
        out = actor.act(
            batch,
            generator=torch.Generator().manual_seed(seed),
            step_generator=torch.Generator().manual_seed(seed),
        )
        assert out.stochastic.sum(1).tolist() == [1, 1, 1]
        j = int(out.stochastic[0].float().argmax())
        assert (out.stochastic[:, j]).all()  # the same step for the whole batch
        chosen.add(j)
        log_prob, value = actor.evaluate(batch, out.chain, out.stochastic)
        torch.testing.assert_close(log_prob, out.log_prob, rtol=1e-5, atol=1e-3)
        torch.testing.assert_close(value, out.value)
    assert chosen == {0, 1, 2, 3}


def test_evaluate_mixes_rows_at_different_steps():
    actor = _actor(noise_level=0.5)
    batch = synthetic_batch(actor.model.config, batch=2)
    outs = [actor.act(batch, step_generator=torch.Generator().manual_seed(s)) for s in range(8)]
    a, b = next((a, b) for a in outs for b in outs if not torch.equal(a.stochastic[0], b.stochastic[0]))
    chain = torch.stack([a.chain[0], b.chain[1]])
    stochastic = torch.stack([a.stochastic[0], b.stochastic[1]])
    log_prob, _ = actor.evaluate(batch, chain, stochastic)
    torch.testing.assert_close(log_prob, torch.stack([a.log_prob[0], b.log_prob[1]]), rtol=1e-5, atol=1e-3)


def test_transition_log_prob_is_the_sde_density_of_the_stored_step():
    actor = _actor(noise_level=0.5, executed_steps=16, action_dim=32)
    batch = synthetic_batch(actor.model.config, batch=2)
    out = actor.act(batch, step_generator=torch.Generator().manual_seed(0))
    j = int(out.stochastic[0].float().argmax())
    # the stochastic step's residual has the SDE std: x_{j+1} - mean ~ N(0, std^2)
    enc = actor.encode(batch)
    cond = actor.head.denoising_conditionings(4, 2, "cpu")[j]
    with torch.no_grad():
        v = actor._velocity(enc, out.chain[:, j], cond)
    mean, std = sde_moments(out.chain[:, j], v, j / 4, 4, 0.5)
    residual = (out.chain[:, j + 1] - mean) / std
    assert 0.8 < float(residual.std()) < 1.2
    expected = torch.distributions.Normal(mean, torch.full_like(mean, std)).log_prob(out.chain[:, j + 1])
    torch.testing.assert_close(out.log_prob, expected.sum((1, 2)), rtol=1e-5, atol=1e-2)


def test_ignore_last_and_joint_log_prob():
    actor = _actor(noise_level=0.5, ignore_last=True)
    for seed in range(10):
        steps = actor.stochastic_steps(2, torch.Generator().manual_seed(seed))
        assert not steps[:, -1].any() and steps.sum(1).tolist() == [1, 1]
    joint = _actor(noise_level=0.5, joint_log_prob=True, ignore_last=True)
    batch = synthetic_batch(joint.model.config, batch=2)
    out = joint.act(batch)
    assert out.stochastic.tolist() == [[True, True, True, False]] * 2
    log_prob, _ = joint.evaluate(batch, out.chain, out.stochastic)
    torch.testing.assert_close(log_prob, out.log_prob, rtol=1e-5, atol=1e-3)
    initial = torch.distributions.Normal(0.0, 1.0).log_prob(out.chain[:, 0, :5, :7]).sum((1, 2))
    assert torch.isfinite(out.log_prob).all() and not torch.allclose(out.log_prob, initial)


def test_log_prob_gradients_reach_the_action_head_but_not_the_critic_inputs():
    actor = _actor(noise_level=0.5)
    batch = synthetic_batch(actor.model.config, batch=2)
    out = actor.act(batch)
    log_prob, value = actor.evaluate(batch, out.chain, out.stochastic)
    log_prob.sum().backward()
    assert actor.model.action_head.action_decoder.layer2.W.grad is not None
    assert all(p.grad is None for p in actor.value_head.parameters())
    actor.zero_grad(set_to_none=True)
    _, value = actor.evaluate(batch, out.chain, out.stochastic)
    value.sum().backward()
    assert all(p.grad is None for p in actor.model.parameters())
    assert all(p.grad is not None for p in actor.value_head.parameters())


def test_model_stays_in_eval_mode():
    actor = _actor()
    actor.train()
    assert not actor.model.training and not any(m.training for m in actor.model.modules())
