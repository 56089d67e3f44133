"""Policy with the fast inference engine (forced on the CPU) gives the eager policy's actions."""

from __future__ import annotations

import numpy as np
import torch
from policy_helpers import observation_of

from groot.data.writer import TASK_COLUMN
from groot.policy import Policy


def test_cpu_is_eager_by_default_and_the_engine_matches_it(tiny_setup, raw_dataset):
    eager = Policy.from_pretrained(tiny_setup.checkpoint, tiny_setup.tag, device="cpu")
    fast = Policy.from_pretrained(tiny_setup.checkpoint, tiny_setup.tag, device="cpu", fast=True)
    assert eager.engine is None and fast.engine is not None
    obs = observation_of(raw_dataset.raw_step(0, 4))
    batched = {key: np.stack([value, value]) for key, value in obs.items() if key != TASK_COLUMN}
    batched[TASK_COLUMN] = obs[TASK_COLUMN] * 2
    for observation in (obs, batched):
        torch.manual_seed(7)
        expected = eager.get_action(observation)
        torch.manual_seed(7)
        actions = fast.get_action(observation)
        assert actions.keys() == expected.keys()
        for key in expected:
            assert actions[key].dtype == np.float32 and actions[key].shape == expected[key].shape
            np.testing.assert_array_equal(actions[key], expected[key])


def test_fast_false_keeps_the_eager_path(tiny_setup):
    policy = Policy.from_pretrained(tiny_setup.checkpoint, tiny_setup.tag, device="cpu", fast=False)
    assert policy.engine is None
