"""run_in_processes: results from spawned workers, a worker's death reported (never a hang)."""

from __future__ import annotations

import os
import signal

import pytest

from groot.utils.worker_pool import WorkerDied, WorkerTraceback, run_in_processes


def square(x: int) -> int:
    return x * x


def crash_on_three(x: int) -> int:
    if x == 3:
        os.kill(os.getpid(), signal.SIGSEGV)
    return x


def exit_on_two(x: int) -> int:
    if x == 2:
        os._exit(7)
    return x


def fail_on_one(x: int) -> int:
    if x == 1:
        raise ValueError(f"bad job {x}")
    return x


def test_results_of_every_job_from_several_workers():
    results = dict(run_in_processes(square, range(6), workers=2))
    assert results == {i: i * i for i in range(6)}


def test_a_segfaulting_worker_raises_naming_signal_and_job():
    with pytest.raises(WorkerDied, match=r"killed by SIGSEGV while running job 3"):
        list(run_in_processes(crash_on_three, range(5), workers=2, describe=lambda j: f"job {j}"))


def test_a_worker_that_exits_raises_with_its_exit_code():
    with pytest.raises(WorkerDied, match=r"exited with code 7 while running job 2"):
        list(run_in_processes(exit_on_two, range(4), workers=2, describe=lambda j: f"job {j}"))


def test_a_job_exception_is_reraised_with_the_worker_traceback():
    with pytest.raises(ValueError, match="bad job 1") as raised:
        list(run_in_processes(fail_on_one, range(3), workers=2))
    assert isinstance(raised.value.__cause__, WorkerTraceback)
    assert "fail_on_one" in str(raised.value.__cause__)


def test_workers_end_when_their_parent_is_killed(tmp_path):
    """A parent SIGKILLed while its workers run jobs leaves no worker behind."""
    import subprocess
    import sys
    import time

    script = tmp_path / "parent.py"
    script.write_text(
        "import time\n"
        "from groot.utils.worker_pool import run_in_processes\n"
        "def sleep(x):\n"
        "    time.sleep(60)\n"
        "if __name__ == '__main__':\n"
        "    list(run_in_processes(sleep, range(2), workers=2))\n")
    parent = subprocess.Popen([sys.executable, str(script)])
    deadline = time.monotonic() + 60
    children: list[int] = []
    while time.monotonic() < deadline and len(children) < 2:
        time.sleep(0.2)
        children = children_of(parent.pid)
    assert len(children) >= 2, "the workers did not start"
    parent.kill()
    parent.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(alive(pid) for pid in children):
        time.sleep(0.2)
    assert not any(alive(pid) for pid in children)


def children_of(pid: int) -> list[int]:
    from pathlib import Path

    found = []
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            fields = dict(line.split(":\t", 1) for line in status.read_text().splitlines() if ":\t" in line)
        except OSError:
            continue
        if fields.get("PPid", "").strip() == str(pid):
            found.append(int(status.parent.name))
    return found


def alive(pid: int) -> bool:
    from pathlib import Path

    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"
