"""A policy whose data config has state-relative actions adds the observed state back to its chunks."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from policy_helpers import observation_of

from groot.data.dataset import GrootDataset
from groot.model.gr00t_n15 import GR00TN15
from groot.policy import Policy


@pytest.fixture(scope="module")
def relative_policy(tiny_setup, tmp_path_factory):
    """An untrained tiny model saved with the shared setup's data config made arm-relative."""
    config = dataclasses.replace(tiny_setup.data_config, relative_action_keys=["action.arm"])
    dataset = GrootDataset(tiny_setup.dataset, config, tiny_setup.tag, transform=False)
    root = tmp_path_factory.mktemp("relative_policy")
    checkpoint = GR00TN15.from_preset("tiny").save_pretrained(
        root / "checkpoint", metadata={tiny_setup.tag: dataset.metadata}, data_config=config)
    return Policy.from_pretrained(checkpoint, tiny_setup.tag, device="cpu"), dataset


def test_relative_actions_are_added_to_the_last_observed_state(relative_policy, monkeypatch):
    policy, dataset = relative_policy
    monkeypatch.setattr(policy, "_predict_normalized",
                        lambda samples, generator=None: np.zeros((len(samples), 16, 32), np.float32))
    obs = observation_of(dataset.raw_step(1, 4))
    stats = dataset.metadata.key_stats("relative_action", "arm")  # [16, 6]
    action = policy.get_action(obs)["action.arm"]
    # a normalized 0 is the middle of each step's min-max range, offset by the observed arm state
    np.testing.assert_allclose(action, (stats["min"] + stats["max"]) / 2 + obs["state.arm"][-1], rtol=1e-5,
                               atol=1e-5)
    shifted = {**obs, "state.arm": obs["state.arm"] + 1.5}
    np.testing.assert_allclose(policy.get_action(shifted)["action.arm"], action + 1.5, rtol=1e-5, atol=1e-5)
