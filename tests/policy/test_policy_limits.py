"""Prompt-token limit and per-call seed of the Policy, alone and behind the server."""

import threading

import numpy as np
import pytest
from policy_helpers import observation_of

from groot.data.writer import TASK_COLUMN
from groot.errors import ObservationError
from groot.model.processor import render_prompt
from groot.policy import Policy
from groot.serve.client import InferenceClient, ServerError
from groot.serve.server import InferenceServer


@pytest.fixture(scope="module")
def policy(tiny_setup):
    return Policy.from_pretrained(tiny_setup.checkpoint, tiny_setup.tag, device="cpu")


@pytest.fixture
def served(policy):
    with InferenceServer(policy, port=0, poll_interval_ms=20) as server:
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        with InferenceClient("127.0.0.1", server.port, timeout_ms=60_000) as client:
            yield client
        server.stop()
        thread.join(timeout=10)


def prompt_tokens(policy, text):
    return len(policy.processor.tokenizer.encode(render_prompt(text, 1, policy.processor.num_image_tokens)))


def test_the_default_token_limit_is_the_models_positions(policy):
    assert policy.max_prompt_tokens == policy.model.config.backbone_cfg.llm.max_position_embeddings == 40960


def test_a_prompt_over_the_token_limit_is_refused_before_any_transform(policy, raw_dataset, monkeypatch):
    obs = observation_of(raw_dataset.raw_step(0, 0))
    limit = prompt_tokens(policy, "x" * 100)
    monkeypatch.setattr(policy, "max_prompt_tokens", limit)
    transformed = []
    monkeypatch.setattr(policy.sample_transform, "apply", lambda step: transformed.append(step) or 1 / 0)
    with pytest.raises(ObservationError, match=rf"{TASK_COLUMN}: 1 prompt\(s\) of up to {limit + 1} tokens "
                                               rf"\(chat template and 16 image tokens included\) make "
                                               rf"{limit + 1} tokens, over the limit of {limit} "
                                               r"\(max_prompt_tokens; groot serve --max-prompt-tokens\)"):
        policy.get_action({**obs, TASK_COLUMN: ["x" * 101]})
    batch = {key: np.stack([value, value]) for key, value in obs.items() if key != TASK_COLUMN}
    with pytest.raises(ObservationError, match=rf"2 prompt\(s\) of up to {limit} tokens .* make {2 * limit}"):
        policy.get_action({**batch, TASK_COLUMN: ["x" * 100, "y"]})
    assert transformed == []
    with pytest.raises(ZeroDivisionError):  # exactly at the limit: accepted, on to the transforms
        policy.get_action({**obs, TASK_COLUMN: ["x" * 100]})
    assert len(transformed) == 1


def test_tokenization_is_one_linear_pass_per_prompt(policy, raw_dataset, monkeypatch):
    """The limit check and the processor share one tokenization of each prompt, and a long prompt's ids
    are its bytes (the byte tokenizer's reference): one id per byte, however long the prompt."""
    encoded = []
    tokenizer = policy.processor.tokenizer
    encode = tokenizer.encode
    monkeypatch.setattr(tokenizer, "encode", lambda text: encoded.append(text) or encode(text))
    obs = observation_of(raw_dataset.raw_step(0, 0))
    policy.get_action({**obs, TASK_COLUMN: ["never seen before " * 50]})
    assert len(encoded) == 1
    for length in (1_000, 8_000, 32_000):
        text = "pick the cube, then place it " * (length // 29)
        ids = policy.processor.prompt_ids(text, 1)
        assert len(ids) == prompt_tokens(policy, "") + len(text.encode())
        start = ids.index(policy.processor.tokenizer.encode("</img>")[0]) + 1
        assert ids[start:start + len(text)] == list(text.encode())


def test_a_seed_reproduces_the_chunk(policy, raw_dataset):
    obs = observation_of(raw_dataset.raw_step(1, 2))
    first, again = (policy.get_action(obs, seed=11)["action.arm"] for _ in range(2))
    other = policy.get_action(obs, seed=12)["action.arm"]
    unseeded = [policy.get_action(obs)["action.arm"] for _ in range(2)]
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other) and not np.array_equal(*unseeded)


def test_served_seed_and_token_limit(policy, raw_dataset, served):
    obs = observation_of(raw_dataset.raw_step(1, 2))
    np.testing.assert_array_equal(served.get_action(obs, seed=5)["action.arm"],
                                  policy.get_action(obs, seed=5)["action.arm"])
    with pytest.raises(ServerError, match=rf"{TASK_COLUMN}: a prompt of 40961 characters, over the limit of "
                                          "40960"):
        served.get_action({**obs, TASK_COLUMN: ["x" * 40961]})
    with pytest.raises(ServerError, match=rf"{TASK_COLUMN}: 1 prompt\(s\) of up to \d+ tokens .* over the "
                                          "limit of 40960"):
        served.get_action({**obs, TASK_COLUMN: ["x" * 40960]})
