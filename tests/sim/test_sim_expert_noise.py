"""Noisy demonstrations execute perturbed actions but record the expert's own (no simulator needed)."""

from __future__ import annotations

import numpy as np

from groot.sim import experts


class _Env:
    def __init__(self):
        self.steps, self.executed = 0, []

    def reset(self, init_state_index):
        self.steps = 0
        return {"step": 0}

    def step(self, action):
        self.steps += 1
        self.executed.append(np.array(action))
        return {"step": self.steps}, self.steps == 5, self.steps == 5


class _Expert(experts.PickPlaceExpert):
    """The real `perturb`, with a scripted `act` in place of the scene-based planner."""

    def __init__(self, env, rng, noise):
        self.env, self.rng, self.noise, self.count = env, rng, noise, 0

    def reset(self):
        pass

    def act(self):
        self.count += 1
        return np.array([0.1 * self.count, 0.0, -0.2, 0.05, 0.0, 0.0, 1.0])


def test_noisy_episode_records_the_noise_free_actions(monkeypatch):
    monkeypatch.setattr(experts, "PickPlaceExpert", _Expert)
    env = _Env()
    rollout = experts.run_expert_episode(env, 0, np.random.default_rng(0), noise=0.1)
    recorded, executed = np.array(rollout["actions"]), np.array(env.executed)
    assert rollout["success"] and recorded.shape == executed.shape == (5, 7)
    np.testing.assert_allclose(recorded[:, 0], [0.1, 0.2, 0.3, 0.4, 0.5], rtol=1e-6)
    assert np.abs(executed[:, :6] - recorded[:, :6]).min() > 1e-5  # every step and axis perturbed
    np.testing.assert_array_equal(executed[:, 6], recorded[:, 6])  # the gripper command is kept
    assert np.abs(executed).max() <= 1.0

    clean_env = _Env()
    experts.run_expert_episode(clean_env, 0, np.random.default_rng(0), noise=0.0)
    np.testing.assert_array_equal(np.array(clean_env.executed, np.float32), recorded)
