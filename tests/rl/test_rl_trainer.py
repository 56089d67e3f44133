"""The PPO loop on the CPU with fake environments: rollouts, updates, checkpoints and exact resume."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from groot.rl.commands import RLConfig, build, resolve
from groot.rl.rollout import RolloutWorker
from groot.rl.synthetic import SyntheticLibero
from groot.rl.trainer import gather_rollouts, train
from groot.train.checkpointing import latest_checkpoint

MAX_STEPS = 12


def _cfg(checkpoint, out, iterations, **overrides):
    values = dict(
        model_path=str(checkpoint),
        output_dir=str(out),
        iterations=iterations,
        num_envs=2,
        max_episode_steps=MAX_STEPS,
        executed_steps=4,
        rollout_epochs=1,
        update_epochs=2,
        global_batch_size=4,
        micro_batch_size=2,
        value_hidden=[16],
        eval_every=2,
        eval_videos=1,
        save_every=1,
        device="cpu",
        tensorboard=False,
    )
    values.update(overrides)
    return RLConfig(**values)


def _run(cfg, resume_from=None):
    built = build(cfg, resume_from)
    envs = SyntheticLibero(2, MAX_STEPS)
    worker = RolloutWorker(envs, built.policy, built.actor, 4, MAX_STEPS // 4)
    result = train(
        built.policy, built.actor, worker, built.learner, built.settings, resume_from, tensorboard=False
    )
    return built, result


def test_rollout_shapes_and_masks(tiny_libero_checkpoint, tmp_path):
    built = build(_cfg(tiny_libero_checkpoint, tmp_path, 1))
    worker = RolloutWorker(SyntheticLibero(2, MAX_STEPS), built.policy, built.actor, 4, MAX_STEPS // 4)
    episode = worker.run(seed=3, record=frozenset({0}))
    calls = episode.valid.shape[0]
    assert episode.valid.shape == (calls, 2) and calls <= 3
    assert episode.dones[episode.valid].sum() == 2  # each environment's episode ends exactly once
    count = int(episode.valid.sum())
    assert len(episode.samples) == count and episode.chains.shape == (count, 5, 16, 32)
    assert episode.stochastic.shape == (count, 4) and (episode.stochastic.sum(1) == 1).all()
    assert len(episode.frames[0]) == 1 + episode.lengths[0]
    data = gather_rollouts([episode], 0.99, 0.95, normalize=True)
    assert len(data.samples) == count and abs(float(data.advantages.mean())) < 1e-5
    # the stored log-probabilities are what the learner recomputes before any update
    batch = built.policy.processor(data.samples).to("cpu")
    with torch.no_grad():
        log_prob, value = built.actor.evaluate(batch, data.chains, data.stochastic)
    torch.testing.assert_close(log_prob, data.old_log_probs, rtol=1e-4, atol=1e-2)
    torch.testing.assert_close(value, data.old_values, rtol=1e-4, atol=1e-4)


def test_recipe_defaults_for_the_small_presets(tiny_libero_checkpoint, tmp_path):
    values = resolve(RLConfig(model_path="x"), "tiny")
    assert values["recipe"] == "small" and values["executed_steps"] == 8 and values["actor_lr"] == 2.5e-5
    reference = resolve(RLConfig(model_path="x"), "n1.5-3b")
    assert (
        reference["actor_lr"],
        reference["value_lr"],
        reference["executed_steps"],
        reference["num_envs"],
        reference["update_epochs"],
        reference["global_batch_size"],
    ) == (5e-6, 1e-4, 5, 64, 4, 1024)
    assert resolve(RLConfig(model_path="x"), "n1.6-3b")["clip_log_ratio"] == 20.0


def test_training_updates_logs_saves_and_resumes_exactly(tiny_libero_checkpoint, tmp_path):
    straight, result = _run(_cfg(tiny_libero_checkpoint, tmp_path / "a", 2))
    rows = [json.loads(line) for line in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in rows] == [1, 2]
    for key in ("return", "success_rate", "approx_kl", "clip_fraction", "value_loss", "grad_norm"):
        assert all(np.isfinite(r[key]) for r in rows), key
    assert "eval_success_rate" in rows[1] and list((tmp_path / "a" / "videos").glob("iter00002_env000_*.mp4"))
    assert [r["episodes"] for r in rows] == [2.0, 2.0]  # 2 environments x 1 rollout epoch
    final = latest_checkpoint(tmp_path / "a")
    assert final.name == "checkpoint-2" and result["checkpoint"] == str(final)
    start = load_file(str(tiny_libero_checkpoint / "model.safetensors"))
    trained = load_file(str(final / "model.safetensors"))
    name = "action_head.action_decoder.layer2.W"
    assert not torch.equal(start[name], trained[name])  # the policy learned something
    assert torch.equal(
        start["backbone.eagle_model.mlp1.0.weight"], trained["backbone.eagle_model.mlp1.0.weight"]
    )

    _run(_cfg(tiny_libero_checkpoint, tmp_path / "b", 1))
    first = latest_checkpoint(tmp_path / "b")
    resumed, _ = _run(_cfg(tiny_libero_checkpoint, tmp_path / "b", 2), resume_from=first)
    for (name, a), b in zip(
        straight.actor.state_dict().items(), resumed.actor.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b), name
    resumed_rows = [json.loads(line) for line in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    for key in ("return", "policy_loss", "value_loss", "grad_norm"):
        assert resumed_rows[-1][key] == rows[-1][key], key


def test_noise_level_zero_is_refused(tiny_libero_checkpoint, tmp_path):
    from groot.errors import ConfigError

    with pytest.raises(ConfigError, match="--noise-level"):
        build(_cfg(tiny_libero_checkpoint, tmp_path, 1, noise_level=0.0))


def test_an_n16_checkpoint_trains_too(tiny_n16_libero_checkpoint, tmp_path):
    built, result = _run(_cfg(tiny_n16_libero_checkpoint, tmp_path, 1, eval_every=0))
    assert type(built.policy.model).__name__ == "GR00TN16" and built.settings.config["recipe"] == "small"
    assert np.isfinite(result["last_metrics"]["grad_norm"]) and result["last_metrics"]["transitions"] > 0
    assert latest_checkpoint(tmp_path).name == "checkpoint-1"


def test_executed_steps_beyond_the_action_horizon_are_refused():
    from groot.errors import ConfigError

    with pytest.raises(ConfigError, match=r"--executed-steps: expected 1\.\.16"):
        resolve(RLConfig(model_path="x", executed_steps=17), "tiny", action_horizon=16)
