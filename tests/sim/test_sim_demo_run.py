"""`groot demo` as a user runs it: a fresh process, third-party output in simulator.log, finished
stages reused on a re-run, other settings refused."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from groot.sim import libero

pytestmark = [pytest.mark.sim, pytest.mark.slow,
              pytest.mark.skipif(not libero.libero_available(),
                                 reason="LIBERO not installed (pip install 'groot[sim]')")]

SHORT = ["--tasks", "0", "--episodes-per-task", "1", "--steps", "3", "--batch-size", "4",
         "--eval-episodes-per-task", "1", "--eval-max-steps", "16", "--workers", "2"]


def demo(out, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "groot.cli", "demo", "--out", str(out), *SHORT, *extra],
                          env={**os.environ, "PYTHONUNBUFFERED": "1"}, capture_output=True, text=True,
                          timeout=900)


def test_short_demo_writes_its_report_then_resumes_and_refuses_other_settings(tmp_path):
    out = tmp_path / "demo"
    first = demo(out)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    assert "expected: about" in first.stdout
    for noise in ("No private macro file", "Applying task order"):
        assert noise not in first.stdout + first.stderr
        assert noise in (out / "simulator.log").read_text()
    report = (out / "report.md").read_text()
    assert "What to expect" in report and "![loss curve](loss.png)" in report
    assert "](eval/videos/task00_ep000_" in report
    summary = json.loads((out / "demo.json").read_text())
    assert summary["expert_success"] > 0 and 0.0 <= summary["policy_success"] <= 1.0

    again = demo(out)
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout.count("done earlier") == 3
    assert "libero_object demos" not in again.stderr  # no stage ran again

    other = demo(out, "--steps", "5")
    assert other.returncode == 2
    assert other.stderr.strip().splitlines()[-1].startswith("error: ") and "steps" in other.stderr
    assert "Traceback" not in other.stderr
