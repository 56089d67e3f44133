"""groot.rl.synthetic: the simulator-free environments keep VectorLibero's episode contract."""

from __future__ import annotations

import numpy as np

from groot.rl.rollout import batch_observation
from groot.rl.synthetic import SyntheticLibero, synthetic_libero_metadata
from groot.sim import libero


def _push(dx: float, steps: int) -> np.ndarray:
    actions = np.zeros((steps, 7))
    actions[:, 0] = dx
    return actions


def test_observations_have_the_libero_panda_layout():
    envs = SyntheticLibero(3, max_steps=10, camera=24)
    obs = envs.reset()
    assert len(obs) == 3
    batch = batch_observation(obs)
    assert batch["video.image"].shape == (3, 1, 24, 24, 3) and batch["video.image"].dtype == np.uint8
    assert batch["state.eef_pos"].shape == (3, 1, 3) and batch[libero.LANGUAGE_KEY] == [envs.instruction] * 3
    assert not np.array_equal(obs[0]["video.image"], obs[1]["video.image"])  # each env marks its frames
    metadata = synthetic_libero_metadata(24)
    assert metadata.modalities["video"]["image"]["resolution"] == [24, 24]
    assert set(metadata.statistics["action"]) == set(libero.ACTION_DIMS)


def test_reward_once_at_success_then_done_without_reset():
    envs = SyntheticLibero(2, max_steps=20, goal=0.25)
    before = envs.reset()
    first = envs.step({0: _push(0.1, 2), 1: _push(-0.1, 2)}, record=frozenset({0}))
    assert first[0].reward == 0.0 and not first[0].done and first[0].steps == 2
    assert len(first[0].frames) == 2 and first[1].frames == []
    assert first[0].obs["video.image"][10, 10, 0] > before[0]["video.image"][10, 10, 0]  # follows x
    second = envs.step({0: _push(0.1, 4)})
    assert second[0].reward == 1.0 and second[0].success and second[0].done
    assert second[0].steps == 3  # the episode ended at the success step; the rest of the chunk is dropped
    third = envs.step({0: _push(0.1, 4)})
    assert third[0].reward == 0.0 and third[0].done and third[0].steps == 3  # no auto-reset
    envs.reset()
    assert envs.step({0: _push(0.0, 1)})[0].steps == 1


def test_without_a_goal_every_episode_runs_max_steps():
    envs = SyntheticLibero(2, max_steps=7, goal=None)
    envs.reset()
    results = envs.step({0: _push(5.0, 5), 1: _push(0.0, 5)})
    assert not any(r.done or r.success for r in results.values())
    results = envs.step({0: _push(5.0, 5), 1: _push(0.0, 5)})
    assert all(r.done and not r.success and r.reward == 0.0 and r.steps == 7 for r in results.values())
