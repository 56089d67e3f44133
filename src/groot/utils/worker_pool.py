"""Run jobs in spawned worker processes, and stop with a clear error when a worker dies.

`multiprocessing.Pool` replaces a worker that dies (a segfault in a renderer, the OOM killer) and
waits forever for the job it was running. Here the parent watches every worker: a death raises
`WorkerDied` naming the worker, its exit code or signal, and the job it was running; the remaining
workers are stopped. An exception raised by a job is re-raised in the parent with the worker's
traceback attached. Workers end when the parent process ends, however it ends.
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
import queue
import signal
import traceback
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from groot.utils.process import exit_when_process_ends

POLL_SECONDS = 0.5


class WorkerDied(RuntimeError):
    """A worker process ended without finishing its jobs."""


class WorkerTraceback(Exception):
    """The traceback of an exception raised in a worker (attached as the `__cause__`)."""


def run_in_processes(function: Callable[[Any], Any], jobs: Iterable[Any], workers: int,
                     describe: Callable[[Any], str] = repr) -> Iterator[tuple[int, Any]]:
    """Yield (job index, function(job)) in the order jobs finish, computed in `workers` spawned processes.

    `function` and the jobs must be picklable. `describe(job)` names a job in the error raised when its
    worker dies. Closing the iterator early stops the workers."""
    jobs = list(jobs)
    context = multiprocessing.get_context("spawn")  # MuJoCo's GL context and CUDA do not survive fork
    todo, done = context.Queue(), context.Queue()
    for index, job in enumerate(jobs):
        todo.put((index, job))
    count = max(1, min(workers, len(jobs)))
    for _ in range(count):
        todo.put(None)
    # current[w]: the job worker w runs (-1: none); shared memory, so it is known even after a crash
    current = context.Array("i", [-1] * count, lock=False)
    owner = os.getpid()
    processes = [context.Process(target=_work, args=(function, todo, done, current, slot, owner),
                                 daemon=True) for slot in range(count)]
    for process in processes:
        process.start()
    finished = 0
    try:
        while finished < len(jobs):
            try:
                index, failure, result = done.get(timeout=POLL_SECONDS)
            except queue.Empty:
                if _stopped(processes, current, jobs, describe) and done.empty():
                    raise WorkerDied("every worker process exited before all jobs were done") from None
                continue
            if failure is not None:
                error, remote_traceback = failure
                raise error from WorkerTraceback(f"on {describe(jobs[index])}:\n{remote_traceback}")
            finished += 1
            yield index, result
    finally:
        for process in processes:
            if process.is_alive():
                process.terminate()
        for process in processes:
            process.join(timeout=5)
        todo.cancel_join_thread()
        done.cancel_join_thread()


def _stopped(processes: list[Any], current: Any, jobs: list[Any], describe: Callable[[Any], str]) -> bool:
    """Raise WorkerDied for a worker that ended abnormally; True when every worker has ended normally."""
    for slot, process in enumerate(processes):
        code = process.exitcode
        if code is None or code == 0:
            continue
        how = f"was killed by {signal.Signals(-code).name}" if code < 0 else f"exited with code {code}"
        index = current[slot]
        job = f"while running {describe(jobs[index])}" if index >= 0 else "before taking a job"
        raise WorkerDied(f"worker process {process.pid} {how} {job}; the other workers were stopped")
    return all(process.exitcode == 0 for process in processes)


def _work(function: Callable[[Any], Any], todo: Any, done: Any, current: Any, slot: int, owner: int) -> None:
    exit_when_process_ends(owner)  # a SIGKILLed parent leaves no simulator running
    while (item := todo.get()) is not None:
        index, job = item
        current[slot] = index
        try:
            result = function(job)
        except BaseException as error:  # reported to the parent, which re-raises it
            done.put((index, (_picklable(error), traceback.format_exc()), None))
            return
        done.put((index, None, result))
        current[slot] = -1


def _picklable(error: BaseException) -> BaseException:
    try:
        pickle.loads(pickle.dumps(error))
        return error
    except Exception:  # e.g. an exception class whose __init__ takes other arguments than its args
        return RuntimeError(f"{type(error).__name__}: {error}")
