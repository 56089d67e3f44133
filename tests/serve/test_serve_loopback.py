"""A real server on 127.0.0.1 (free port, in a thread) driven by the light client and raw sockets."""

import os
import signal
import subprocess
import sys
import textwrap
import threading

import msgpack
import numpy as np
import pytest
import zmq

from groot.data.modality import ModalityConfig
from groot.policy import ObservationSpec
from groot.serve import protocol
from groot.serve.client import InferenceClient, ServerError, ServerTimeoutError
from groot.serve.server import InferenceServer

LANGUAGE = "annotation.human.task_description"


class EchoPolicy:
    """Validates like the real Policy; the action chunk is the state repeated 16 times plus the step."""

    spec = ObservationSpec(video={"video.front": (1, 8, 10)}, state={"state.arm": (1, 3)},
                           language=(LANGUAGE,))

    def get_action(self, observation):
        checked, batched = self.spec.check(observation)
        if checked[LANGUAGE][0] == "crash":
            raise RuntimeError("the model fell over")
        chunk = checked["state.arm"] + np.arange(16, dtype=np.float32)[None, :, None]  # [B, 16, 3]
        return {"action.arm": chunk if batched else chunk[0]}

    def get_modality_config(self):
        return {"video": ModalityConfig([0], ["video.front"]), "state": ModalityConfig([0], ["state.arm"]),
                "action": ModalityConfig(list(range(16)), ["action.arm"]),
                "language": ModalityConfig([0], [LANGUAGE])}


def observation(state=(0.5, -1.0, 2.0), text="pick the cube"):
    return {"video.front": np.zeros((1, 8, 10, 3), np.uint8),
            "state.arm": np.array([state], np.float32), LANGUAGE: [text]}


@pytest.fixture
def serve():
    """serve(**server kwargs) -> running server; stopped and closed after the test."""
    started = []

    def start(**kwargs):
        server = InferenceServer(EchoPolicy(), port=0, poll_interval_ms=20, **kwargs)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        started.append((server, thread))
        return server

    yield start
    for server, thread in started:
        server.stop()
        thread.join(timeout=5)
        server.close()


def client_for(server, **kwargs):
    return InferenceClient("127.0.0.1", server.port, timeout_ms=kwargs.pop("timeout_ms", 5000), **kwargs)


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
    from groot.serve.server import InferenceServer

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
