"""Helper processes that end with the process they serve.

A worker started for a parent (a DataLoader worker, a process-pool worker) outlives a parent that is
SIGKILLed unless it watches for that death itself: nothing tells it otherwise, and a worker forked from
a forkserver even keeps the forkserver (and through both, the multiprocessing resource tracker) alive.
`exit_when_process_ends(pid)` sets up that watch; a pool passes it the pool owner's pid:

    ProcessPoolExecutor(initializer=exit_when_process_ends, initargs=(os.getpid(),))
"""

from __future__ import annotations

import os
import select
import signal
import threading


def exit_when_process_ends(pid: int) -> bool:
    """Kill this process (SIGKILL) as soon as process `pid` ends, however it ends.

    A daemon thread waits on a pidfd of `pid` (Linux >= 5.3): no polling, and unlike a parent-death
    signal it does not matter which thread of `pid` started this process, nor whether `pid` is the
    parent at all. Pass the pid from the process to follow (a worker reading its parent's pid itself
    may already read its adopter's). Returns True when the watch is set up; False, doing nothing, where
    pidfds are missing (other systems, older kernels). If `pid` has already ended, kills this process
    at once."""
    if not hasattr(os, "pidfd_open"):
        return False
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        _kill_self()
    except OSError:  # ENOSYS: a kernel without pidfds
        return False
    threading.Thread(target=_kill_self_when_readable, args=(pidfd,), name=f"exit-with-{pid}",
                     daemon=True).start()
    return True


def _kill_self_when_readable(pidfd: int) -> None:
    poller = select.poll()
    poller.register(pidfd, select.POLLIN)
    poller.poll()  # blocks until the process has ended
    _kill_self()


def _kill_self() -> None:
    os.kill(os.getpid(), signal.SIGKILL)
