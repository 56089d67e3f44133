import os
import signal
import subprocess
import sys
import time

import pytest

from groot.utils.process import exit_when_process_ends

pytestmark = pytest.mark.skipif(not hasattr(os, "pidfd_open"), reason="pidfds are Linux-only")

_WATCHER = ("import sys, time\n"
            "from groot.utils.process import exit_when_process_ends\n"
            "assert exit_when_process_ends(int(sys.argv[1]))\n"
            "print('watching', flush=True)\n"
            "time.sleep(120)\n")


def _watcher(pid: int) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", _WATCHER, str(pid)], stdout=subprocess.PIPE, text=True)


def test_watcher_is_killed_when_the_watched_process_is_sigkilled():
    """The watched process is not the watcher's parent: the watch follows any pid."""
    watched = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    watcher = _watcher(watched.pid)
    try:
        assert watcher.stdout.readline().strip() == "watching"
        time.sleep(0.5)
        assert watcher.poll() is None  # alive while the watched process is
        watched.send_signal(signal.SIGKILL)
        assert watcher.wait(timeout=10) == -signal.SIGKILL
    finally:
        for process in (watched, watcher):
            if process.poll() is None:
                process.kill()
                process.wait()


def test_watching_a_process_that_already_ended_kills_at_once():
    ended = subprocess.Popen([sys.executable, "-c", "pass"])
    ended.wait()  # reaped: the pid no longer exists
    watcher = _watcher(ended.pid)
    try:
        assert watcher.wait(timeout=30) == -signal.SIGKILL
        assert watcher.stdout.read() == ""
    finally:
        if watcher.poll() is None:
            watcher.kill()
            watcher.wait()


def test_no_op_without_pidfds(monkeypatch):
    monkeypatch.delattr(os, "pidfd_open")
    assert exit_when_process_ends(os.getpid()) is False
