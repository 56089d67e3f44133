"""parse_host_port: HOST:PORT from the command line, IPv4, names and IPv6 (bracketed or not)."""

from __future__ import annotations

import re
import threading

import pytest

from groot.errors import ConfigError
from groot.utils.net import parse_host_port


@pytest.mark.parametrize("address, expected", [
    ("127.0.0.1:5555", ("127.0.0.1", 5555)),
    ("localhost:1", ("localhost", 1)),
    ("[::1]:5555", ("[::1]", 5555)),
    ("::1:65535", ("::1", 65535)),
])
def test_host_and_port_are_split_at_the_last_colon(address, expected):
    assert parse_host_port(address) == expected


@pytest.mark.parametrize("address", ["localhost", ":5555", "[]:5555", "host:", "host:port", "host:0",
                                     "host:65536", "host:-1"])
def test_a_malformed_address_names_the_flag(address):
    message = r"--server: expected HOST:PORT .*found " + re.escape(repr(address))
    with pytest.raises(ConfigError, match=message):
        parse_host_port(address, "--server")


def test_a_bracketed_ipv6_address_reaches_a_server():
    pytest.importorskip("zmq")
    from groot.serve.client import InferenceClient
    from groot.serve.server import InferenceServer

    class Echo:
        def get_action(self, observation):
            return {"action.x": observation["state.x"]}

        def get_modality_config(self):
            return {}

    try:
        server = InferenceServer(Echo(), host="::1", port=0)
    except OSError:
        pytest.skip("no IPv6 loopback here")
    with server:
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        host, port = parse_host_port(f"[::1]:{server.port}", "--server")
        with InferenceClient(host, port, timeout_ms=10_000) as client:
            assert client.ping()
        server.stop()
        thread.join(10)
