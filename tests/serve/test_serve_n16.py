"""The N1.6 protocol (spec 6.2) on a real server on 127.0.0.1: groot's client, a client written only
against the wire format, strict checks of the nested observation, token, limits and protocol mix-ups."""

import io
import json
import re
import subprocess
import sys

import msgpack
import numpy as np
import pytest
import zmq
from serve_helpers import LANGUAGE, EchoPolicy, client_for

from groot.data.modality import ModalityConfig
from groot.errors import ConfigError
from groot.serve.client import InferenceClient, ServerError
from groot.serve.commands import resolve_protocol
from groot.serve.limits import RequestLimits
from groot.serve.nested import nest_observation
from groot.serve.server import InferenceServer

TASK = "annotation.human.action.task_description"


class RecordingPolicy:
    """Two views of 2 frames, two state groups, one language key; records the flat observation it gets.
    Its chunk: 4 steps of [arm state of the last frame + step, gripper state]."""

    def __init__(self):
        self.seen = []

    def get_action(self, observation):
        self.seen.append(observation)
        arm, gripper = observation["state.arm"][:, -1], observation["state.gripper"][:, -1]  # [B, 3], [B, 1]
        steps = np.arange(4, dtype=np.float32)[None, :, None]
        return {"action.arm": arm[:, None, :] + steps, "action.gripper": np.repeat(gripper[:, None], 4, 1)}

    def get_modality_config(self):
        return {"video": ModalityConfig([-1, 0], ["video.front", "video.wrist"]),
                "state": ModalityConfig([-1, 0], ["state.arm", "state.gripper"]),
                "action": ModalityConfig(list(range(4)), ["action.arm", "action.gripper"]),
                "language": ModalityConfig([0], [TASK])}


def nested_observation(batch=2):
    state = np.arange(batch * 2 * 3, dtype=np.float32).reshape(batch, 2, 3)
    return {"video": {"front": np.zeros((batch, 2, 6, 8, 3), np.uint8),
                      "wrist": np.full((batch, 2, 4, 4, 3), 7, np.uint8)},
            "state": {"arm": state, "gripper": np.full((batch, 2, 1), 0.5, np.float32)},
            "language": {TASK: [[f"task {i}"] for i in range(batch)]}}


@pytest.fixture
def served(serve_with):
    """-> (running N1.6 server of a RecordingPolicy, the policy)"""
    policy = RecordingPolicy()
    return serve_with(policy, protocol="n1.6"), policy


def test_every_endpoint_round_trips(served):
    server, policy = served
    with client_for(server, protocol="n1.6") as client:
        assert client.ping()
        assert client.call("ping") == {"status": "ok", "message": "Server is running"}
        assert client.get_modality_config() == policy.get_modality_config()
        actions, info = client.get_action_nested(nested_observation(), options={"anything": 1})
        assert info == {} and set(actions) == {"arm", "gripper"}
        assert actions["arm"].dtype == np.float32 and actions["arm"].shape == (2, 4, 3)
        np.testing.assert_array_equal(actions["arm"][1, 2], [9.0 + 2, 10.0 + 2, 11.0 + 2])
        np.testing.assert_array_equal(actions["gripper"], np.full((2, 4, 1), 0.5, np.float32))
        assert client.reset() == {} and client.reset({"episode": 3}) == {}
    flat = policy.seen[0]
    assert set(flat) == {"video.front", "video.wrist", "state.arm", "state.gripper", TASK}
    assert flat[TASK] == ["task 0", "task 1"] and flat["video.wrist"].shape == (2, 2, 4, 4, 3)


def test_the_flat_client_fits_policylike_over_n16(served):
    server, policy = served
    nested = nested_observation(batch=1)
    unbatched = {"video.front": nested["video"]["front"][0], "video.wrist": nested["video"]["wrist"][0],
                 "state.arm": nested["state"]["arm"][0].astype(np.float64),  # sent as float32
                 "state.gripper": nested["state"]["gripper"][0], TASK: ["wave"]}
    with client_for(server, protocol="n1.6") as client:
        action = client.get_action(unbatched)
        assert set(action) == {"action.arm", "action.gripper"} and action["action.arm"].shape == (4, 3)
        np.testing.assert_array_equal(action["action.arm"][3], [3.0 + 3, 4.0 + 3, 5.0 + 3])
        batched = {key: value[None] for key, value in unbatched.items() if key != TASK}
        assert client.get_action({**batched, TASK: ["wave"]})["action.arm"].shape == (1, 4, 3)
    assert policy.seen[0][TASK] == ["wave"] and policy.seen[0]["state.arm"].dtype == np.float32


def test_the_same_observation_gives_the_same_chunk_over_both_protocols(serve_with):
    """EchoPolicy behind an N1.5 and an N1.6 server: the flat client gets identical chunks."""
    obs = {"video.front": np.zeros((1, 8, 10, 3), np.uint8),
           "state.arm": np.array([[1.0, 2.0, 3.0]], np.float32), LANGUAGE: ["pick"]}
    answers = []
    for protocol in ("n1.5", "n1.6"):
        with client_for(serve_with(EchoPolicy(), protocol=protocol), protocol=protocol) as client:
            answers.append(client.get_action(obs))
    assert set(answers[0]) == set(answers[1]) == {"action.arm"}
    np.testing.assert_array_equal(answers[0]["action.arm"], answers[1]["action.arm"])


# ---- a client written only against the wire format (plain zmq + msgpack + np.save) --------------------
def encode(value):
    if isinstance(value, np.ndarray):
        buffer = io.BytesIO()
        np.save(buffer, value, allow_pickle=False)
        return {"__ndarray_class__": True, "as_npy": buffer.getvalue()}
    if isinstance(value, dict):
        return {key: encode(item) for key, item in value.items()}
    return value


def wire_call(server, request):
    with zmq.Context() as context, context.socket(zmq.REQ) as socket:
        socket.setsockopt(zmq.RCVTIMEO, 5000)
        socket.setsockopt(zmq.LINGER, 0)
        socket.connect(f"tcp://127.0.0.1:{server.port}")
        socket.send(msgpack.packb(request, use_bin_type=True))
        return msgpack.unpackb(socket.recv(), raw=False)


def test_a_wire_format_client_gets_actions_and_info(served):
    server, _ = served
    reply = wire_call(server, {"endpoint": "get_action", "api_token": None,
                               "data": {"observation": encode(nested_observation()), "options": None}})
    assert isinstance(reply, list) and len(reply) == 2, reply
    actions, info = reply
    assert info == {} and set(actions) == {"arm", "gripper"}
    arm = np.load(io.BytesIO(actions["arm"]["as_npy"]), allow_pickle=False)
    assert actions["arm"]["__ndarray_class__"] is True and arm.dtype == np.float32 and arm.shape == (2, 4, 3)
    np.testing.assert_array_equal(arm[0, 0], [3.0, 4.0, 5.0])
    assert wire_call(server, {"endpoint": "ping"}) == {"status": "ok", "message": "Server is running"}
    assert wire_call(server, {"endpoint": "reset", "data": {"options": None}}) == {}
    config = wire_call(server, {"endpoint": "get_modality_config"})
    assert config["state"]["__ModalityConfig_class__"] is True
    assert json.loads(config["state"]["as_json"]) == {"delta_indices": [-1, 0],
                                                      "modality_keys": ["state.arm", "state.gripper"]}
    no_endpoint = wire_call(server, {"data": {"observation": encode(nested_observation(batch=1))}})
    assert isinstance(no_endpoint, list) and set(no_endpoint[0]) == {"arm", "gripper"}


def test_the_api_token_guards_every_endpoint(serve_with):
    server = serve_with(RecordingPolicy(), protocol="n1.6", api_token="s3cret")
    for endpoint, data in (("ping", None), ("reset", {"options": None}),
                           ("get_action", {"observation": encode(nested_observation()), "options": None})):
        for token in (None, "wrong"):
            assert wire_call(server, {"endpoint": endpoint, "data": data, "api_token": token}) == {
                "error": "Unauthorized: Invalid API token"}
    with client_for(server, protocol="n1.6", api_token="s3cret") as client:
        assert client.reset() == {} and client.get_action_nested(nested_observation())[1] == {}


# ---- strict checks of the nested observation ---------------------------------------------------------
def _set(modality, key, value):
    return lambda obs: obs[modality].__setitem__(key, value)


@pytest.mark.parametrize("change, match", [
    (lambda o: o.pop("language"), r"observation\['language'\]: missing; expected a map of "
                                  r"'annotation\.human\.action\.task_description'"),
    (lambda o: o["state"].pop("gripper"), r"observation\['state'\] is missing 'gripper'; expected keys: "
                                          r"'arm', 'gripper'; found: 'arm'"),
    (lambda o: o["state"].update({"state.arm": o["state"].pop("arm")}),
     r"observation\['state'\]: unexpected key\(s\) 'state\.arm'; expected keys: 'arm', 'gripper'"),
    (lambda o: o.update({"action": {}}), r"observation: unexpected key\(s\) 'action'"),
    (_set("video", "front", np.zeros((2, 2, 6, 8, 3), np.float32)),
     r"observation\['video'\]\['front'\]: expected dtype uint8, found float32"),
    (_set("video", "front", np.zeros((2, 6, 8, 3), np.uint8)),
     r"\['front'\]: expected 5 dims \[B, T, H, W, 3\], found shape \[2, 6, 8, 3\]"),
    (_set("video", "wrist", np.zeros((2, 1, 4, 4, 3), np.uint8)),
     r"\['wrist'\]: expected T = 2 \(len\(delta_indices\) of the video modality\) in \[B, T, H, W, 3\], "
     r"found shape \[2, 1, 4, 4, 3\]"),
    (_set("video", "wrist", np.zeros((2, 2, 4, 4, 4), np.uint8)), r"\['wrist'\]: expected C = 3 \(RGB\)"),
    (_set("state", "arm", np.zeros((2, 2, 3), np.float64)),
     r"observation\['state'\]\['arm'\]: expected dtype float32, found float64"),
    (_set("state", "arm", np.zeros((2, 3), np.float32)), r"\['arm'\]: expected 3 dims \[B, T, D\]"),
    (_set("state", "arm", np.array([[[0, 0, 0], [0, np.inf, 0]]] * 2, np.float32)),
     r"\['arm'\]: expected finite values, found inf at index \[0, 1, 1\]"),
    (_set("state", "arm", [[[0.0, 0.0, 0.0]] * 2] * 2), r"\['arm'\]: expected a float32 array \[B, T, D\], "
                                                        r"found list"),
    (_set("language", TASK, ["a", "b"]), r"\['annotation\.human\.action\.task_description'\]\[0\]: expected "
                                         r"a list of 1 string \(B lists of 1 string"),
    (_set("language", TASK, [["a", "b"], ["c", "d"]]), r"\[0\]: expected a list of 1 string"),
    (_set("language", TASK, "pick"), r"\['annotation\.human\.action\.task_description'\]: expected B lists"),
    (_set("language", TASK, [["a"]]), r"observation: expected one batch size B for every key, found "
                                      r"observation\['video'\]\['front'\] 2, .*\['annotation\.human\.action"
                                      r"\.task_description'\] 1"),
    (lambda o: [o[m].__setitem__(k, o[m][k][:0]) for m in ("video", "state") for k in list(o[m])],
     r"expected a batch of at least 1 sample, found shape \[0, 2, 6, 8, 3\]"),
])
def test_malformed_nested_observations_are_named(served, change, match):
    server, policy = served
    obs = nested_observation()
    change(obs)
    with client_for(server, protocol="n1.6") as client:
        with pytest.raises(ServerError, match=match):
            client.get_action_nested(obs)
        assert client.get_action_nested(nested_observation())[0]["arm"].shape == (2, 4, 3)
    assert len(policy.seen) == 1  # the malformed one never reached the policy


class NoLanguagePolicy(RecordingPolicy):
    def get_modality_config(self):
        return {key: value for key, value in super().get_modality_config().items() if key != "language"}


def test_a_policy_without_language_takes_none(serve_with):
    server = serve_with(NoLanguagePolicy(), protocol="n1.6")
    obs = nested_observation()
    with client_for(server, protocol="n1.6") as client:
        with pytest.raises(ServerError, match=r"observation\['language'\]: unexpected key\(s\) 'annotation"
                                              r"\.human\.action\.task_description'; expected keys: none"):
            client.get_action_nested(obs)
        obs["language"] = {}
        assert client.get_action_nested(obs)[0]["arm"].shape == (2, 4, 3)
        del obs["language"]
        assert client.get_action_nested(obs)[0]["arm"].shape == (2, 4, 3)


@pytest.mark.parametrize("data, match", [
    ({"video.front": 1, "state.arm": 2}, r"data: expected \{'observation': <nested observation>, 'options': "
                                         r"map \| None\} \(N1\.6 protocol\), found keys 'video\.front', "
                                         r"'state\.arm'"),
    ({"observation": {}, "options": [1]}, r"data\['options'\]: expected a map or null, found list"),
    ({"observation": [1, 2]}, r"observation: expected a map of 'video', 'state', 'language', found list"),
])
def test_malformed_envelopes_are_named(served, data, match):
    server, _ = served
    reply = wire_call(server, {"endpoint": "get_action", "data": data})
    assert set(reply) == {"error"}
    assert re.search(match, reply["error"]), reply["error"]
    reply = wire_call(server, {"endpoint": "reset", "data": {"options": "soon"}})
    assert reply == {"error": "data['options']: expected a map or null, found str"}


def test_request_limits_hold_for_nested_observations(serve_with):
    server = serve_with(RecordingPolicy(), protocol="n1.6", limits=RequestLimits(max_batch_size=2))
    with client_for(server, protocol="n1.6") as client:
        with pytest.raises(ServerError, match=r"video\.front: batch of 3 samples, over the limit of 2 "
                                              r"\(groot serve --max-batch-size\)"):
            client.get_action_nested(nested_observation(batch=3))
        obs = nested_observation()
        obs["language"][TASK] = [["x" * 50_000], ["y"]]
        with pytest.raises(ServerError, match=r"task_description: a prompt of 50000 characters, over the "):
            client.get_action_nested(obs)


class NaNPolicy(RecordingPolicy):
    def get_action(self, observation):
        actions = super().get_action(observation)
        actions["action.gripper"][0, 1, 0] = np.nan
        return actions


def test_a_non_finite_action_is_withheld(serve_with):
    with client_for(serve_with(NaNPolicy(), protocol="n1.6"), protocol="n1.6") as client, pytest.raises(
            ServerError, match=r"action\.gripper: expected finite actions, found nan at index \[0, 1, 0\]"):
        client.get_action_nested(nested_observation())


# ---- protocol selection and mix-ups ----------------------------------------------------------------
def test_a_protocol_mix_up_is_named(serve_with):
    n15 = serve_with(RecordingPolicy())
    with client_for(n15, protocol="n1.6") as client:
        with pytest.raises(ServerError, match=r"found an N1\.6 \{'observation', 'options'\} request; this "
                                              r"server speaks the N1\.5 protocol"):
            client.get_action_nested(nested_observation())
        with pytest.raises(ServerError, match=r"unknown endpoint 'reset'; expected one of ping, kill, "
                                              r"get_action, get_modality_config \(n1\.5 protocol\)"):
            client.reset()
    with client_for(n15) as client:
        with pytest.raises(ConfigError, match=r"reset: an N1\.6 endpoint; this client speaks n1\.5"):
            client.reset()
        with pytest.raises(ConfigError, match="get_action_nested: an N1.6 endpoint"):
            client.get_action_nested(nested_observation())


def test_protocol_names_are_checked():
    with pytest.raises(ConfigError, match=r"protocol: expected one of n1\.5, n1\.6, found 'n2'"):
        InferenceServer(RecordingPolicy(), port=0, protocol="n2")
    with pytest.raises(ConfigError, match=r"protocol: expected one of n1\.5, n1\.6, found 'N1.6'"):
        InferenceClient("127.0.0.1", 5555, protocol="N1.6")


def test_serve_picks_the_checkpoint_generation_unless_told():
    assert resolve_protocol("auto", "n1.5") == "n1.5" and resolve_protocol("auto", "n1.6") == "n1.6"
    assert resolve_protocol("n1.5", "n1.6") == "n1.5" and resolve_protocol("n1.6", "n1.5") == "n1.6"
    result = subprocess.run([sys.executable, "-m", "groot.cli", "serve", "--help"], capture_output=True,
                            text=True, check=True)
    assert "--protocol {auto,n1.5,n1.6}" in result.stdout and "checkpoint's generation" in result.stdout


def test_nest_observation_batches_and_unbatches():
    flat = {"video.front": np.zeros((2, 6, 8, 3), np.uint8), "state.arm": np.zeros((2, 3), np.int64),
            TASK: "go"}
    nested, batched = nest_observation(flat)
    assert not batched and nested["video"]["front"].shape == (1, 2, 6, 8, 3)
    assert nested["state"]["arm"].dtype == np.float32 and nested["language"] == {TASK: [["go"]]}
    nested, batched = nest_observation({**flat, "state.arm": np.zeros((2, 2, 3)), TASK: ["a", "b"]})
    assert batched and nested["state"]["arm"].shape == (2, 2, 3)
    assert nested["language"][TASK] == [["a"], ["b"]]
