"""A SIGKILLed fine-tune leaves no process behind: loader workers, forkserver, resource tracker."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(not hasattr(os, "pidfd_open") or not Path("/proc/self/stat").is_file(),
                                reason="needs Linux (pidfds, /proc)")


def _parent_pids() -> dict[int, int]:
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:  # ended meanwhile
                continue
            parents[int(entry.name)] = int(stat.rpartition(")")[2].split()[1])
    return parents


def _descendants(pid: int) -> list[int]:
    parents = _parent_pids()
    found, frontier = [], [pid]
    while frontier:
        children = [child for child, parent in parents.items() if parent in frontier]
        found += children
        frontier = children
    return found


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return False
    return state != "Z"


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="on 1 core the CPU trainer starts no workers")
def test_sigkilled_finetune_leaves_no_processes(libero_dataset, tmp_path):
    out = tmp_path / "run"
    trainer = subprocess.Popen(
        [sys.executable, "-m", "groot.cli", "finetune", "--dataset-path", str(libero_dataset),
         "--output-dir", str(out), "--data-config", "libero_panda", "--base-model", "tiny",
         "--batch-size", "2", "--max-steps", "100000", "--save-steps", "100000", "--logging-steps", "1",
         "--dataloader-num-workers", "2"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    helpers: list[int] = []
    try:
        metrics = out / "metrics.jsonl"
        deadline = time.monotonic() + 120
        while not (metrics.is_file() and metrics.read_text().count("\n") >= 2):  # training, with workers
            assert trainer.poll() is None, "the fine-tune ended before it was killed"
            assert time.monotonic() < deadline, "no training step within 120 s"
            time.sleep(0.2)
        helpers = _descendants(trainer.pid)
        forkserver_processes = [pid for pid in helpers if "multiprocessing.forkserver" in _cmdline(pid)]
        assert len(forkserver_processes) >= 2, helpers  # the forkserver and at least one loader worker
        trainer.send_signal(signal.SIGKILL)
        trainer.wait(timeout=30)
        deadline = time.monotonic() + 10
        while any(_running(pid) for pid in helpers) and time.monotonic() < deadline:
            time.sleep(0.1)
        survivors = {pid: _cmdline(pid)[:120] for pid in helpers if _running(pid)}
        assert not survivors, f"still running 10 s after the trainer was SIGKILLed: {survivors}"
    finally:
        if trainer.poll() is None:
            trainer.kill()
            trainer.wait()
        for pid in helpers:
            if _running(pid):
                os.kill(pid, signal.SIGKILL)
