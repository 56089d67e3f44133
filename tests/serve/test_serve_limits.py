"""Request limits: every violation is answered at once, naming the key and the limit, and the policy
never sees the request."""

import numpy as np
import pytest
from serve_helpers import LANGUAGE, EchoPolicy, client_for, observation

from groot.serve.client import ServerError
from groot.serve.limits import LimitError, RequestLimits

LIMITS = RequestLimits(max_prompt_chars=100, max_batch_size=4, max_frames=6, max_image_size=64)


class CountingPolicy(EchoPolicy):
    def __init__(self):
        self.calls = 0

    def get_action(self, observation):
        self.calls += 1
        return super().get_action(observation)


def batched(batch, text="pick"):
    return {"video.front": np.zeros((batch, 1, 8, 10, 3), np.uint8),
            "state.arm": np.zeros((batch, 1, 3), np.float32), LANGUAGE: [text] * batch}


@pytest.mark.parametrize("request_data, match", [
    ({**observation(), LANGUAGE: ["x" * 101]}, rf"{LANGUAGE}: a prompt of 101 characters, over the limit of "
                                               r"100 \(groot serve --max-prompt-chars\)"),
    ({**observation(), LANGUAGE: "x" * 5_000_000}, "a prompt of 5000000 characters"),
    ({**observation(), LANGUAGE: np.array([["x" * 200]])}, "a prompt of 200 characters"),
    (batched(5), r"video\.front: batch of 5 samples, over the limit of 4 \(groot serve --max-batch-size\)"),
    ({**batched(2), LANGUAGE: ["a"] * 300}, rf"{LANGUAGE}: batch of 300 samples"),
    ({**observation(), "video.front": np.zeros((7, 8, 10, 3), np.uint8)},
     r"video\.front: brings the request to 7 video frames, over the limit of 6 \(groot serve --max-frames\)"),
    ({**batched(4), "video.side": np.zeros((4, 1, 8, 10, 3), np.uint8)},
     r"video\.side: brings the request to 8 video frames"),
    ({**observation(), "video.front": np.zeros((1, 65, 10, 3), np.uint8)},
     r"video\.front: frames of 65x10 pixels, over the limit of 64 pixels a side \(groot serve "
     r"--max-image-size\)"),
])
def test_requests_over_a_limit_are_refused_before_the_policy_runs(serve_with, request_data, match):
    policy = CountingPolicy()
    server = serve_with(policy, limits=LIMITS)
    with client_for(server) as client:
        with pytest.raises(ServerError, match=match):
            client.get_action(request_data)
        assert policy.calls == 0
        assert client.get_action(batched(4))["action.arm"].shape == (4, 16, 3)  # at the limits: served
        assert policy.calls == 1


def test_default_limits_serve_ordinary_requests(serve_with):
    server = serve_with(CountingPolicy())
    assert server.limits == RequestLimits()
    with client_for(server) as client:
        assert client.get_action(batched(32, "pick up the red cube"))["action.arm"].shape == (32, 16, 3)
        with pytest.raises(ServerError, match="--max-batch-size"):
            client.get_action(batched(33))


@pytest.mark.parametrize("field", ["max_prompt_chars", "max_batch_size", "max_frames", "max_image_size"])
@pytest.mark.parametrize("value", [0, -1, 2.5, True])
def test_limits_must_be_positive_integers(field, value):
    with pytest.raises(LimitError, match=field):
        RequestLimits(**{field: value})


def test_unbatched_state_lists_are_not_counted_as_a_batch():
    long_history = {"state.arm": [[0.0, 1.0, 2.0]] * 50, LANGUAGE: ["pick"]}
    RequestLimits(max_batch_size=4).check(long_history)  # [T=50, D] unbatched: no batch dim to count
