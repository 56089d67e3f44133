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
