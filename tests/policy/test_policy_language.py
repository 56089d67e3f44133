"""Serving renders the instruction as the plain string, the form the original N1.5 trains on.

The original's training gives GR00TTransform a list of one string and renders its element
(NVIDIA/Isaac-GR00T @ 5e3ef5ef9a89b647f11490d749b0049ae2796b94, `gr00t/data/dataset.py` get_language,
`gr00t/model/transforms.py` _prepare_language). Its policy (`gr00t/model/policy.py`) prints
`"['<task>']"` whenever a per-sample array reaches the chat template: at that commit for a batched
[B, 1] array or an unbatched [1] array (expanded to [1, 1]), the plain string only for an unbatched list
or a batched [B] array; from 267e2dc6 (Sept 2025) on, an unbatched list becomes [1, 1] too. groot serves
every form as the plain string.
"""

from __future__ import annotations

import numpy as np
import pytest
from policy_helpers import observation_of

from groot.data.writer import TASK_COLUMN
from groot.policy import Policy


@pytest.fixture(scope="module")
def policy(tiny_setup):
    return Policy.from_pretrained(tiny_setup.checkpoint, tiny_setup.tag, device="cpu")


def test_every_language_form_reaches_the_model_as_the_plain_string(policy, raw_dataset, monkeypatch):
    seen: list = []

    def capture(samples, generator=None):
        seen.extend(sample["language"] for sample in samples)
        return np.zeros((len(samples), 16, 32), np.float32)

    monkeypatch.setattr(policy, "_predict_normalized", capture)
    obs = observation_of(raw_dataset.raw_step(0, 3))
    task = obs[TASK_COLUMN][0]
    assert isinstance(task, str) and task
    arrays = {key: value for key, value in obs.items() if key != TASK_COLUMN}
    for language in (task, [task], np.array([task])):
        policy.get_action({**arrays, TASK_COLUMN: language})
    batched = {key: np.stack([value, value]) for key, value in arrays.items()}
    for language in ([task, task], np.array([task, task]), np.array([[task], [task]])):
        policy.get_action({**batched, TASK_COLUMN: language})
    assert len(seen) == 3 + 3 * 2
    assert all(type(language) is str and language == task for language in seen)
