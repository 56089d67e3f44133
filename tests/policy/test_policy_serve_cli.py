import os
import re
import signal
import subprocess
import sys

import numpy as np
import pytest

from groot.data.dataset import GrootDataset
from groot.serve.client import InferenceClient, ServerError


def test_groot_serve_answers_and_stops_on_sigterm(tiny_setup):
    command = [sys.executable, "-m", "groot.cli", "serve", "--model-path", str(tiny_setup.checkpoint),
               "--embodiment-tag", tiny_setup.tag, "--port", "0", "--device", "cpu", "--api-token", "tok"]
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        port = None
        for line in process.stderr:
            found = re.search(r"serving on tcp://127\.0\.0\.1:(\d+)", line)
            if found:
                port = int(found.group(1))
                break
        assert port is not None, "the server never logged its address"
        step = GrootDataset(tiny_setup.dataset, tiny_setup.data_config, tiny_setup.tag,
                            transform=False).raw_step(1, 0)
        observation = {key: value for key, value in step.items() if not key.startswith("action.")}
        with InferenceClient("127.0.0.1", port, api_token="tok", timeout_ms=30_000) as client:
            action = client.get_action(observation)
            assert action["action.arm"].shape == (16, 6) and np.isfinite(action["action.arm"]).all()
        with InferenceClient("127.0.0.1", port, timeout_ms=30_000) as anonymous, \
                pytest.raises(ServerError, match="Unauthorized"):
            anonymous.ping()
        process.send_signal(signal.SIGTERM)
        _, log = process.communicate(timeout=30)
    finally:
        process.kill()
    assert process.returncode == 0, log
    assert "get_action answered in" in log and "stopped" in log
