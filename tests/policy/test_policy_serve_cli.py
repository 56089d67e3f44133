import os
import re
import signal
import subprocess
import sys

import numpy as np
import pytest

from groot.data.dataset import GrootDataset
from groot.errors import GrootError
from groot.serve.client import InferenceClient, ServerError
from groot.serve.commands import API_TOKEN_ENV, resolve_api_token
from groot.serve.server import InferenceServer


def serve_command(tiny_setup, *flags):
    return [sys.executable, "-m", "groot.cli", "serve", "--model-path", str(tiny_setup.checkpoint),
            "--embodiment-tag", tiny_setup.tag, "--device", "cpu", *flags]


def test_groot_serve_answers_and_stops_on_sigterm(tiny_setup):
    """The token comes from GROOT_API_TOKEN, so it is not on the command line (`ps`)."""
    command = serve_command(tiny_setup, "--port", "0")
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "OMP_NUM_THREADS": "1", API_TOKEN_ENV: "tok"})
    try:
        port = None
        for line in process.stderr:
            found = re.search(r"serving on tcp://127\.0\.0\.1:(\d+)", line)
            if found:
                port = int(found.group(1))
                break
        assert port is not None, "the server never logged its address"
        assert "tok" not in " ".join(command)
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


def test_groot_serve_protocol_flag_serves_n16_from_an_n15_checkpoint(tiny_setup):
    """--protocol n1.6 overrides the checkpoint's generation (auto would pick n1.5 here)."""
    process = subprocess.Popen(serve_command(tiny_setup, "--port", "0", "--protocol", "n1.6"),
                               stderr=subprocess.PIPE, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        port = None
        for line in process.stderr:
            found = re.search(r"serving on tcp://127\.0\.0\.1:(\d+) \(n1\.6 protocol", line)
            if found:
                port = int(found.group(1))
                break
        assert port is not None, "the server never logged its address and protocol"
        step = GrootDataset(tiny_setup.dataset, tiny_setup.data_config, tiny_setup.tag,
                            transform=False).raw_step(1, 0)
        observation = {key: value for key, value in step.items() if not key.startswith("action.")}
        with InferenceClient("127.0.0.1", port, timeout_ms=30_000, protocol="n1.6") as client:
            flat = client.get_action(observation)
            assert flat["action.arm"].shape == (16, 6) and np.isfinite(flat["action.arm"]).all()
            assert client.reset() == {}
        process.send_signal(signal.SIGTERM)
        _, log = process.communicate(timeout=30)
    finally:
        process.kill()
    assert process.returncode == 0, log


def test_a_port_in_use_is_one_error_line(tiny_setup):
    class Idle:
        def get_action(self, observation):
            return {}

        def get_modality_config(self):
            return {}

    with InferenceServer(Idle(), port=0) as taken:
        result = subprocess.run(serve_command(tiny_setup, "--port", str(taken.port)), capture_output=True,
                                text=True, timeout=120, env={**os.environ, "OMP_NUM_THREADS": "1"})
    lines = [line for line in result.stderr.splitlines() if "INFO" not in line]
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert lines == [f"error: cannot bind the inference server to tcp://127.0.0.1:{taken.port}: Address "
                     "already in use (is another server on that port? pick another --port)"]


def test_a_port_in_use_fails_before_the_checkpoint_loads(capsys):
    from groot.cli import main

    class Idle:
        def get_action(self, observation):
            return {}

    with InferenceServer(Idle(), port=0) as taken:
        code = main(["serve", "--model-path", "/nonexistent/checkpoint", "--embodiment-tag", "new_embodiment",
                     "--port", str(taken.port)])
    err = capsys.readouterr().err
    assert code == 2 and "Address already in use" in err and "nonexistent" not in err


def test_api_token_sources(tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text("from-file\n")
    assert resolve_api_token(None, str(token_file), {API_TOKEN_ENV: "from-env"}) == "from-file"
    assert resolve_api_token("from-flag", None, {API_TOKEN_ENV: "from-env"}) == "from-flag"
    assert resolve_api_token(None, None, {API_TOKEN_ENV: "from-env"}) == "from-env"
    assert resolve_api_token(None, None, {API_TOKEN_ENV: ""}) is None
    assert resolve_api_token(None, None, {}) is None
    with pytest.raises(GrootError, match="at most one, found both"):
        resolve_api_token("a", str(token_file), {})
    (tmp_path / "empty").write_text(" \n")
    with pytest.raises(GrootError, match="empty: expected the API token, found an empty file"):
        resolve_api_token(None, str(tmp_path / "empty"), {})
    with pytest.raises(GrootError, match="missing: expected a readable text file .* FileNotFoundError"):
        resolve_api_token(None, str(tmp_path / "missing"), {})


def test_help_documents_every_limit_and_token_source():
    result = subprocess.run([sys.executable, "-m", "groot.cli", "serve", "--help"], capture_output=True,
                            text=True, check=True)
    for flag in ("--api-token-file", API_TOKEN_ENV, "--max-prompt-chars", "--max-prompt-tokens",
                 "--max-batch-size", "--max-frames", "--max-image-size", "--max-message-mb", "'seed'"):
        assert flag in result.stdout
