"""A real server on 127.0.0.1 (free port, in a thread) driven by the light client and raw sockets."""

import logging
import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import threading

import msgpack
import numpy as np
import pytest
import zmq
from serve_helpers import LANGUAGE, EchoPolicy, client_for, observation

from groot.data.modality import ModalityConfig
from groot.serve import protocol
from groot.serve.client import InferenceClient, ServerError, ServerTimeoutError
from groot.serve.server import BindError, InferenceServer


def test_happy_path(serve):
    server = serve()
    assert server.endpoint.startswith("tcp://127.0.0.1:")
    with client_for(server) as client:
        assert client.ping()
        config = client.get_modality_config()
        assert config["action"] == ModalityConfig(list(range(16)), ["action.arm"])
        action = client.get_action(observation(state=(1.0, 2.0, 3.0)))
        assert list(action) == ["action.arm"] and action["action.arm"].shape == (16, 3)
        np.testing.assert_allclose(action["action.arm"][5], [6.0, 7.0, 8.0])
        batched = {"video.front": np.zeros((2, 1, 8, 10, 3), np.uint8),
                   "state.arm": np.stack([np.zeros((1, 3)), np.ones((1, 3))]).astype(np.float32),
                   LANGUAGE: ["a", "b"]}
        action = client.get_action(batched)["action.arm"]
        assert action.shape == (2, 16, 3)
        np.testing.assert_allclose(action[1, 0], [1.0, 1.0, 1.0])


def test_api_token(serve):
    server = serve(api_token="s3cret")
    with client_for(server) as anonymous, client_for(server, api_token="wrong") as wrong:
        for client in (anonymous, wrong):
            with pytest.raises(ServerError, match="Unauthorized: Invalid API token"):
                client.get_action(observation())
            with pytest.raises(ServerError, match="Unauthorized"):
                client.ping()
    with client_for(server, api_token="s3cret") as client:
        assert client.get_action(observation())["action.arm"].shape == (16, 3)


def raw_request(server, frames):
    """Send frames from a plain REQ socket (no groot client) and decode the reply without hooks."""
    with zmq.Context() as context, context.socket(zmq.REQ) as socket:
        socket.setsockopt(zmq.RCVTIMEO, 5000)
        socket.setsockopt(zmq.LINGER, 0)
        socket.connect(server.endpoint)
        socket.send_multipart(frames)
        return msgpack.unpackb(socket.recv())


@pytest.mark.parametrize("frames, match", [
    ([b"\xc1 definitely not msgpack"], "malformed msgpack"),
    ([msgpack.packb({"endpoint": "ping"}), b"second frame"], "single message frame"),
    ([msgpack.packb("just a string")], "must be a map"),
    ([msgpack.packb({"endpoint": "fly"})], "unknown endpoint 'fly'"),
    ([msgpack.packb({"endpoint": "get_action", "data": {"x": {"__ndarray_class__": True,
                                                              "as_npy": b"\x80\x04pickle"}}})],
     "not an .npy file"),
])
def test_malformed_messages_get_an_error_answer(serve, frames, match):
    server = serve()
    reply = raw_request(server, frames)
    assert set(reply) == {"error"} and match in reply["error"]
    assert raw_request(server, [msgpack.packb({"endpoint": "ping"})])["status"] == "ok"


def test_an_official_style_client_is_answered(serve):
    server = serve()
    reply = raw_request(server, [protocol.pack({"data": observation()})])  # no endpoint: get_action
    assert set(reply) == {"action.arm"} and reply["action.arm"]["__ndarray_class__"] is True


@pytest.mark.parametrize("change, match", [
    (lambda o: o.pop("state.arm"), r"missing state\.arm"),
    (lambda o: o.update({"state.arm": np.zeros((1, 4), np.float32)}), r"state\.arm: expected shape \[1, 3\]"),
    (lambda o: o.update({"video.front": np.zeros((1, 9, 10, 3), np.uint8)}), r"video\.front: expected shape"),
    (lambda o: o.update({"video.front": np.zeros((1, 8, 10, 3), np.float32)}), "expected dtype uint8"),
    (lambda o: o.update({"state.arm": np.array([[0.0, np.nan, 1.0]])}), "expected finite values"),
    (lambda o: o.update({LANGUAGE: ["a", "b"]}), "a list of 1 string"),
    (lambda o: o.update({LANGUAGE: "crash"}), "RuntimeError: the model fell over"),
])
def test_bad_observations_are_answered_and_the_server_lives_on(serve, change, match):
    server = serve()
    obs = observation()
    change(obs)
    with client_for(server) as client:
        with pytest.raises(ServerError, match=match):
            client.get_action(obs)
        assert client.get_action(observation())["action.arm"].shape == (16, 3)


def test_a_message_over_the_size_limit_times_out_and_the_server_survives(serve):
    server = serve(max_message_bytes=64 * 1024)
    obs = observation()
    obs["video.front"] = np.zeros((1, 256, 256, 3), np.uint8)  # ~196 KB
    with client_for(server, timeout_ms=500) as client:
        with pytest.raises(ServerTimeoutError, match="message size limit"):
            client.get_action(obs)
        assert client.ping()  # the socket was rebuilt after the timeout
    with client_for(server, max_message_bytes=64 * 1024) as client, \
            pytest.raises(protocol.ProtocolError, match="over the 65536-byte message size limit"):
        client.get_action(obs)


def test_a_default_client_refuses_a_request_over_the_default_server_limit_at_once(serve):
    server = serve()
    obs = observation()
    obs["video.front"] = np.zeros((1, 4800, 4800, 3), np.uint8)  # 69 MB > 64 MiB
    with client_for(server) as client:
        with pytest.raises(protocol.ProtocolError, match="over the 67108864-byte message size limit"):
            client.get_action(obs)
        assert client.ping()


def test_two_hundred_sequential_requests(serve):
    server = serve()
    with client_for(server) as client:
        for i in range(200):
            action = client.get_action(observation(state=(i, 0.0, -i)))["action.arm"]
            assert action[0, 0] == i and action[15, 2] == 15 - i
        assert client.ping()


def test_no_server_means_a_timeout_not_a_hang():
    with zmq.Context() as context, context.socket(zmq.REP) as placeholder:
        port = placeholder.bind_to_random_port("tcp://127.0.0.1")
    with InferenceClient("127.0.0.1", port, timeout_ms=200) as client:
        assert not client.ping()
        with pytest.raises(ServerTimeoutError, match="no answer"):
            client.get_modality_config()


def test_kill_stops_the_server():
    with InferenceServer(EchoPolicy(), port=0, poll_interval_ms=20) as server:
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        with client_for(server) as client:
            client.kill_server()
        thread.join(timeout=5)
        assert not thread.is_alive()


SIGNAL_SCRIPT = textwrap.dedent("""
    import sys
    from groot.serve.server import BindError, InferenceServer

    class Idle:
        def get_action(self, observation):
            return {}

        def get_modality_config(self):
            return {}

    with InferenceServer(Idle(), port=0, poll_interval_ms=20) as server:
        print(server.port, flush=True)
        server.serve_until_signalled()
    print("stopped cleanly", flush=True)
""")


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signals_shut_the_server_down_cleanly(signum):
    process = subprocess.Popen([sys.executable, "-c", SIGNAL_SCRIPT], stdout=subprocess.PIPE, text=True,
                               env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        port = int(process.stdout.readline())
        with InferenceClient("127.0.0.1", port, timeout_ms=5000) as client:
            assert client.ping()
        process.send_signal(signum)
        out, _ = process.communicate(timeout=10)
    finally:
        process.kill()
    assert process.returncode == 0 and "stopped cleanly" in out


@pytest.mark.parametrize("state, match", [
    ([[0.5, -1.0], [2.0]], r"state\.arm: expected a rectangular numeric array, found a ragged list"),
    ({"__ndarray_class__": 1, "as_npy": b"x"},
     r"data\['state\.arm'\]: malformed encoding: expected '__ndarray_class__': true, found 1"),
    ({"__ndarray_class__": True}, r"data\['state\.arm'\]: .*'__ndarray_class__' without its 'as_npy'"),
    ({"not": "an array"}, r"state\.arm: expected a numeric array, found dict"),
    (np.array([[0.5, 1e300, 2.0]]), r"state\.arm: expected values within the float32 range "
                                    r"\(\|x\| <= 3\.403e\+38\), found 1e\+300 at index \[0, 1\]"),
    (np.array([[0.5, -1e39, 2.0]]), r"state\.arm: .*float32 range.*found -1e\+39"),
])
def test_error_replies_name_the_key(serve, state, match):
    server = serve()
    obs = {key: msgpack.unpackb(protocol.pack(value)) for key, value in observation().items()}
    obs["state.arm"] = msgpack.unpackb(protocol.pack(state)) if isinstance(state, np.ndarray) else state
    reply = raw_request(server, [msgpack.packb({"endpoint": "get_action", "data": obs})])
    assert set(reply) == {"error"}, reply
    assert re.search(match, reply["error"]), reply["error"]
    assert "dtype object" not in reply["error"] and "found inf" not in reply["error"]


class SeededPolicy(EchoPolicy):
    """The chunk is the state plus noise from a generator seeded with `seed` (or unseeded)."""

    def get_action(self, observation, seed=None):
        chunk = super().get_action(observation)["action.arm"]
        return {"action.arm": chunk + np.random.default_rng(seed).standard_normal(chunk.shape, np.float32)}


def test_a_seed_reproduces_the_action_chunk(serve_with):
    server = serve_with(SeededPolicy())
    with client_for(server) as client:
        first, again = (client.get_action(observation(), seed=7)["action.arm"] for _ in range(2))
        other = client.get_action(observation(), seed=8)["action.arm"]
        unseeded = [client.get_action(observation())["action.arm"] for _ in range(2)]
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other) and not np.array_equal(*unseeded)


def test_a_seed_travels_as_a_top_level_key(serve):
    message = protocol.unpack(protocol.pack_request("get_action", {"k": 1}, api_token="t", seed=3))
    assert message == {"endpoint": "get_action", "data": {"k": 1}, "api_token": "t", "seed": 3}
    with client_for(serve()) as client, pytest.raises(ServerError, match="policy does not take a seed"):
        client.get_action(observation(), seed=1)  # EchoPolicy.get_action has no seed parameter


def _has_ipv6_loopback():
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.skipif(not _has_ipv6_loopback(), reason="this machine has no IPv6 loopback (::1)")
@pytest.mark.parametrize("host", ["::1", "[::1]"])
def test_ipv6_loopback(serve, host):
    server = serve(host=host)
    assert server.endpoint.startswith("tcp://[::1]:")
    with InferenceClient(host, server.port, timeout_ms=5000) as client:
        assert client.get_action(observation())["action.arm"].shape == (16, 3)


def test_a_port_in_use_is_a_bind_error(serve):
    server = serve()
    with pytest.raises(BindError, match=rf"cannot bind the inference server to tcp://127\.0\.0\.1:"
                                        rf"{server.port}: Address already in use"):
        InferenceServer(EchoPolicy(), port=server.port)
    with pytest.raises(BindError, match=r"tcp://192\.0\.2\.1:\*: .*expected an address of this machine"):
        InferenceServer(EchoPolicy(), host="192.0.2.1", port=0)  # TEST-NET-1: never a local address


@pytest.mark.parametrize("host, token, warned", [
    ("127.0.0.1", None, False), ("localhost", None, False), ("0.0.0.0", None, True),
    ("0.0.0.0", "s3cret", False),
])
def test_binding_beyond_loopback_without_a_token_warns(caplog, host, token, warned):
    with caplog.at_level(logging.WARNING, logger="groot.serve.server"), \
            InferenceServer(EchoPolicy(), host=host, port=0, api_token=token):
        pass
    assert ("beyond loopback without an API token" in caplog.text) == warned
