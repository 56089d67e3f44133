import threading

import pytest
from serve_helpers import EchoPolicy

from groot.serve.server import InferenceServer


@pytest.fixture
def serve_with():
    """serve_with(policy, **server kwargs) -> running server; stopped and closed after the test."""
    started = []

    def start(policy, **kwargs):
        server = InferenceServer(policy, port=kwargs.pop("port", 0), poll_interval_ms=20, **kwargs)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        started.append((server, thread))
        return server

    yield start
    for server, thread in started:
        server.stop()
        thread.join(timeout=5)
        server.close()


@pytest.fixture
def serve(serve_with):
    """serve(**server kwargs) -> running server of an EchoPolicy."""
    return lambda **kwargs: serve_with(EchoPolicy(), **kwargs)
