"""Vectorized LIBERO environments for RL, stepped a chunk at a time in spawned worker processes.

Environment i runs task `tasks[i % len(tasks)]` and always starts from the suite's fixed init state
`init_states[i]` (fixed reset states). `step` executes a chunk [k, 7] in each listed environment and
returns the chunk reward: +1 at the first success step (the relative success reward), else 0; an
episode ends at success or at `max_steps` and is not reset until the next `reset` (no auto-reset).
Camera images are rendered only for the steps whose observation is read (a chunk's last, or every step
of a recorded episode). Environments live in `workers` processes (0: in this process); the policy stays
in the caller's.
"""

from __future__ import annotations

import contextlib
import dataclasses
import multiprocessing
import os
import traceback
from typing import Any

import numpy as np

from groot.utils.worker_pool import WorkerDied

POLL_SECONDS = 1.0


@dataclasses.dataclass(frozen=True)
class EnvSpec:
    suite: str
    task_id: int
    init_state: int
    image_size: int
    seed: int
    max_steps: int


@dataclasses.dataclass
class ChunkResult:
    obs: dict[str, Any]  # the observation after the chunk (libero_panda keys; no images once done)
    reward: float  # 1.0 when the episode succeeded during this chunk
    done: bool
    success: bool
    steps: int  # environment steps of the episode so far
    frames: list[np.ndarray]  # agent | wrist view per executed step, when recorded


def env_specs(
    suite: str,
    tasks: list[int],
    num_envs: int,
    init_states: list[int] | None,
    image_size: int,
    seed: int,
    max_steps: int,
    first_index: int = 0,
) -> list[EnvSpec]:
    """Env i (global index g = first_index + i): task tasks[g % T], init state init_states[i] (default:
    g // T, so each task's envs start from its init states 0, 1, ...), simulator seed seed + g."""
    if init_states is not None and len(init_states) != num_envs:
        from groot.errors import ConfigError

        raise ConfigError(
            f"--init-states: expected {num_envs} values (one per environment), found {len(init_states)}"
        )
    return [
        EnvSpec(
            suite,
            tasks[(first_index + i) % len(tasks)],
            init_states[i] if init_states else (first_index + i) // len(tasks),
            image_size,
            seed + first_index + i,
            max_steps,
        )
        for i in range(num_envs)
    ]


class _EnvSlot:
    """One LiberoEnv and its episode's success flag (lives in a worker)."""

    def __init__(self, spec: EnvSpec):
        from groot.sim.libero import LiberoEnv

        self.spec = spec
        self.env = LiberoEnv(
            spec.suite, spec.task_id, image_size=spec.image_size, seed=spec.seed, max_steps=spec.max_steps
        )
        self.success = self.done = False

    def reset(self) -> dict[str, Any]:
        self.success = self.done = False
        return self.env.reset(self.spec.init_state)

    def step_chunk(self, actions: np.ndarray, record: bool) -> ChunkResult:
        from groot.eval.closed_loop import video_frame

        obs, reward, frames = self.env.observation(), 0.0, []
        for j, action in enumerate(actions):
            if self.done:
                break
            render = record or self.env.ends_chunk(j, len(actions))  # images only where they are read
            obs, success, self.done = self.env.step(action, render=render)
            if record:
                frames.append(video_frame(obs))
            if success and not self.success:
                reward, self.success = 1.0, True
        return ChunkResult(obs, reward, self.done, self.success, self.env.steps, frames)


def _serve(conn: Any, specs: list[EnvSpec], owner: int) -> None:
    """Worker loop: ("reset", [local ids]) -> [obs]; ("step", [(local id, actions, record)]) -> [ChunkResult];
    ("close", None) ends. A failure is answered with ("error", traceback)."""
    from groot.utils.process import exit_when_process_ends

    exit_when_process_ends(owner)
    slots = [_EnvSlot(spec) for spec in specs]
    conn.send(("ready", None))
    while True:
        command, payload = conn.recv()
        try:
            if command == "close":
                for slot in slots:
                    slot.env.close()
                return
            if command == "reset":
                reply = [slots[i].reset() for i in payload]
            else:
                reply = [slots[i].step_chunk(actions, record) for i, actions, record in payload]
            conn.send(("ok", reply))
        except Exception:
            conn.send(("error", traceback.format_exc()))
            return


class VectorLibero:
    """`num_envs` LIBERO environments (`env_specs`) spread over `workers` processes."""

    def __init__(self, specs: list[EnvSpec], workers: int = 1):
        self.specs = specs
        self.num_envs = len(specs)
        count = max(0, min(workers, len(specs)))
        # env i -> (worker, local index): round robin
        self._where = [(i % count, i // count) if count else (0, i) for i in range(len(specs))]
        self._local: list[_EnvSlot] = []
        self._conns: list[Any] = []
        self._processes: list[Any] = []
        if count == 0:
            self._local = [_EnvSlot(spec) for spec in specs]
            return
        context = multiprocessing.get_context("spawn")  # MuJoCo's GL context and CUDA do not survive fork
        before = os.environ.get("OMP_NUM_THREADS")
        os.environ["OMP_NUM_THREADS"] = "1"  # each worker steps its simulators on one core
        try:
            for w in range(count):
                parent, child = context.Pipe()
                mine = [spec for i, spec in enumerate(specs) if self._where[i][0] == w]
                process = context.Process(target=_serve, args=(child, mine, os.getpid()), daemon=True)
                process.start()
                self._conns.append(parent)
                self._processes.append(process)
        finally:
            if before is None:
                os.environ.pop("OMP_NUM_THREADS", None)
            else:
                os.environ["OMP_NUM_THREADS"] = before
        for w in range(count):
            self._receive(w)

    def reset(self) -> list[dict[str, Any]]:
        """Every environment back to its init state -> one observation per environment."""
        return self._call("reset", {i: i for i in range(self.num_envs)})

    def step(
        self, chunks: dict[int, np.ndarray], record: frozenset[int] = frozenset()
    ) -> dict[int, ChunkResult]:
        """{env index: actions [k, 7]} -> {env index: ChunkResult}; `record`: envs whose frames to keep."""
        payload = {i: (actions, i in record) for i, actions in chunks.items()}
        results = self._call("step", payload)
        return dict(zip(chunks, results, strict=True))

    def _call(self, command: str, payload: dict[int, Any]) -> list[Any]:
        if self._local:
            if command == "reset":
                return [self._local[i].reset() for i in payload]
            return [self._local[i].step_chunk(actions, record) for i, (actions, record) in payload.items()]
        per_worker: dict[int, list] = {}
        order: dict[int, list[int]] = {}
        for i, item in payload.items():
            w, local = self._where[i]
            per_worker.setdefault(w, []).append(local if command == "reset" else (local, *item))
            order.setdefault(w, []).append(i)
        for w, items in per_worker.items():
            self._conns[w].send((command, items))
        results: dict[int, Any] = {}
        for w in per_worker:
            results.update(zip(order[w], self._receive(w), strict=True))
        return [results[i] for i in payload]

    def _receive(self, w: int) -> Any:
        conn, process = self._conns[w], self._processes[w]
        while not conn.poll(POLL_SECONDS):
            if not process.is_alive():
                raise WorkerDied(f"environment worker {process.pid} exited with code {process.exitcode}")
        try:
            status, reply = conn.recv()
        except EOFError:
            raise WorkerDied(f"environment worker {process.pid} closed its pipe") from None
        if status == "error":
            raise RuntimeError(f"environment worker {process.pid} failed:\n{reply}")
        return reply

    def close(self) -> None:
        for slot in self._local:
            slot.env.close()
        for conn in self._conns:
            with contextlib.suppress(BrokenPipeError, OSError):
                conn.send(("close", None))
        for process in self._processes:
            process.join(timeout=10)
            if process.is_alive():
                process.terminate()

    def __enter__(self) -> VectorLibero:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
