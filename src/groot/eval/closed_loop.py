"""Closed-loop evaluation in LIBERO: roll a policy out in the simulator and count successes.

Fixed protocol: task t, episode e starts from the suite's init state e (e = 0..E-1), the simulator is
seeded with `seed`, torch (when loaded) with `seed + e`; each rollout ends at success or at the suite's
step limit. The policy is queried for a 16-step chunk and the first `action_horizon` steps are executed
before it is queried again. Writes `report.json`, `report.md` and MP4s (agent view | wrist view) under
`out/videos/`; without videos the cameras render only the steps before a query (the same images).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from groot.errors import ConfigError
from groot.policy_protocol import PolicyLike
from groot.sim import libero
from groot.utils.net import parse_host_port
from groot.utils.system import usable_cores
from groot.utils.worker_pool import run_in_processes

VideoMode = Literal["failures", "all", "none"]


@dataclasses.dataclass(frozen=True)
class PolicySource:
    """Where a worker gets its policy: a checkpoint loaded in-process, or a running `groot serve`.

    Picklable, so each evaluation process builds its own policy (or client)."""

    model_path: str | None = None
    server: str | None = None  # HOST:PORT
    embodiment_tag: str = "new_embodiment"
    data_config: str | None = None
    denoising_steps: int | None = None
    device: str | None = None
    api_token: str | None = None
    timeout_ms: int = 60_000
    protocol: str = "n1.5"  # wire protocol of `server`: "n1.5" | "n1.6"

    def __post_init__(self) -> None:
        if (self.model_path is None) == (self.server is None):
            raise ConfigError("give exactly one of model_path and server")
        if self.server is not None:
            parse_host_port(self.server, "server")

    def __call__(self, env: libero.LiberoEnv) -> PolicyLike:
        if self.server is not None:
            from groot.serve.client import InferenceClient

            host, port = parse_host_port(self.server, "server")
            return InferenceClient(host, port, api_token=self.api_token, timeout_ms=self.timeout_ms,
                                   protocol=self.protocol)
        from groot.policy import Policy

        return Policy.from_pretrained(self.model_path, self.embodiment_tag, data_config=self.data_config,
                                      denoising_steps=self.denoising_steps, device=self.device)


PolicyFactory = Callable[[libero.LiberoEnv], PolicyLike]


@dataclasses.dataclass(frozen=True)
class EvalProtocol:
    """The fixed evaluation protocol (what makes two reports comparable)."""

    suite: str
    episodes_per_task: int
    action_horizon: int
    seed: int
    image_size: int
    video: VideoMode
    max_steps: int | None = None  # None: the suite's standard limit


@dataclasses.dataclass(frozen=True)
class _Job:
    task_id: int
    protocol: EvalProtocol
    make_policy: Any
    out: str


def evaluate(make_policy: PolicyFactory, suite: str, out: str | Path, tasks: Sequence[int] | None = None,
             episodes_per_task: int = 10, action_horizon: int = 8, video: VideoMode = "failures",
             seed: int = 0, workers: int = 1, image_size: int = 128, max_steps: int | None = None,
             progress: bool = True) -> dict[str, Any]:
    """Evaluate the policy built by `make_policy(env)` (picklable when workers > 1, e.g. a PolicySource).

    -> report {"protocol", "tasks": {id: {"language", "successes", "episodes", "success_rate",
    "mean_steps"}}, "success_rate", "episodes": [...], "report_json", "report_md"}"""
    from tqdm import tqdm

    if not 1 <= action_horizon <= 16:
        raise ConfigError(f"action_horizon: expected 1..16 (the policy predicts 16 steps), "
                         f"found {action_horizon}")
    out = Path(out)
    (out / "videos").mkdir(parents=True, exist_ok=True)
    task_ids = list(range(libero.num_tasks(suite))) if not tasks else list(tasks)
    protocol = EvalProtocol(suite, episodes_per_task, action_horizon, seed, image_size, video, max_steps)
    jobs = [_Job(t, protocol, make_policy, str(out)) for t in task_ids]
    episodes: list[dict[str, Any]] = []
    with tqdm(total=len(jobs) * episodes_per_task, desc=f"eval {suite}", unit="episode",
              disable=not progress) as bar:
        for results in _map(_run_task, jobs, workers):
            episodes.extend(results)
            bar.update(len(results))
            bar.set_postfix(success=f"{np.mean([e['success'] for e in episodes]):.0%}")
    episodes.sort(key=lambda e: task_ids.index(e["task"]))  # stable: episodes stay in order per task
    report = _report(protocol, task_ids, episodes)
    report["report_json"], report["report_md"] = str(out / "report.json"), str(out / "report.md")
    Path(report["report_json"]).write_text(json.dumps(report, indent=2))
    Path(report["report_md"]).write_text(format_report(report))
    return report


def _map(function: Callable[[_Job], list], jobs: list[_Job], workers: int) -> Any:
    if workers <= 1 or len(jobs) <= 1:
        yield from map(function, jobs)
        return
    processes = min(workers, len(jobs))
    with _threads_per_process(processes):
        for _, result in run_in_processes(function, jobs, processes, describe=_describe):
            yield result


def _describe(job: _Job) -> str:
    return f"{job.protocol.suite} task {job.task_id}"


@contextlib.contextmanager
def _threads_per_process(processes: int):
    """OMP_NUM_THREADS for the evaluation processes started inside: the cores split between them.

    Each of them runs the simulator and its own policy; with torch's default of a thread per core in
    every process they spin against each other and the renderer. A smaller value set by the user is
    kept."""
    before = os.environ.get("OMP_NUM_THREADS")
    share = max(1, usable_cores() // max(1, processes))
    if before is not None and before.isdigit() and int(before) > 0:
        share = min(share, int(before))
    os.environ["OMP_NUM_THREADS"] = str(share)
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("OMP_NUM_THREADS", None)
        else:
            os.environ["OMP_NUM_THREADS"] = before


def _run_task(job: _Job) -> list[dict[str, Any]]:
    protocol = job.protocol
    with libero.LiberoEnv(protocol.suite, job.task_id, image_size=protocol.image_size, seed=protocol.seed,
                          max_steps=protocol.max_steps) as env:
        policy = job.make_policy(env)
        try:
            return [run_episode(env, policy, episode, protocol, Path(job.out))
                    for episode in range(protocol.episodes_per_task)]
        finally:
            close = getattr(policy, "close", None)
            if callable(close):
                close()


def run_episode(env: libero.LiberoEnv, policy: PolicyLike, episode: int, protocol: EvalProtocol,
                out: Path) -> dict[str, Any]:
    """One rollout from init state `episode` (modulo the task's init states) -> its result row."""
    init_index = episode % env.task.num_init_states
    _seed_torch(protocol.seed + episode)
    started = time.perf_counter()
    obs = env.reset(init_index)
    frames = [video_frame(obs)] if protocol.video != "none" else []
    success = done = False
    queries = 0
    while not done:
        chunk = policy.get_action(libero.policy_observation(obs))
        queries += 1
        for step in range(protocol.action_horizon):
            render = bool(frames) or env.ends_chunk(step, protocol.action_horizon)  # images only where read
            obs, success, done = env.step(libero.action_to_vector(chunk, step), render=render)
            if frames:
                frames.append(video_frame(obs))
            if done:
                break
    seconds = time.perf_counter() - started
    row = {"task": env.task.task_id, "language": env.language, "init_state": init_index, "success": success,
           "steps": env.steps, "policy_queries": queries, "seconds": round(seconds, 2), "video": None}
    if frames and (protocol.video == "all" or not success):
        from groot.data.video import encode_video

        name = f"task{env.task.task_id:02d}_ep{episode:03d}_{'success' if success else 'failure'}.mp4"
        encode_video(out / "videos" / name, np.stack(frames), fps=libero.CONTROL_FPS)
        row["video"] = str(out / "videos" / name)
    return row


def video_frame(obs: dict[str, Any]) -> np.ndarray:
    """Agent view and wrist view side by side. uint8 [H, 2W, 3]"""
    return np.concatenate([obs["video.image"], obs["video.wrist_image"]], axis=1)


def _seed_torch(seed: int) -> None:
    """Seed the policy's sampling noise when torch is in use (a client-only evaluation never imports it)."""
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.manual_seed(seed)


def _report(protocol: EvalProtocol, task_ids: list[int], episodes: list[dict[str, Any]]) -> dict[str, Any]:
    tasks = {}
    for task_id in task_ids:
        mine = [e for e in episodes if e["task"] == task_id]
        successes = sum(e["success"] for e in mine)
        tasks[task_id] = {"language": mine[0]["language"], "successes": successes, "episodes": len(mine),
                          "success_rate": successes / len(mine),
                          "mean_steps": float(np.mean([e["steps"] for e in mine]))}
    return {"protocol": dataclasses.asdict(protocol) | {"max_steps": protocol.max_steps or
                                                          libero.SUITE_MAX_STEPS.get(protocol.suite)},
            "tasks": tasks,
            "success_rate": float(np.mean([e["success"] for e in episodes])),
            "episodes": episodes}


def format_report(report: dict[str, Any]) -> str:
    """Markdown: the protocol, then one row per task and the overall success rate."""
    p = report["protocol"]
    lines = [f"# Closed-loop evaluation: {p['suite']}", "",
             f"{p['episodes_per_task']} episodes per task (init states 0..{p['episodes_per_task'] - 1}), "
             f"action horizon {p['action_horizon']}, step limit {p['max_steps']}, seed {p['seed']}, "
             f"{p['image_size']}x{p['image_size']} cameras.", "",
             "| task | instruction | success | mean steps |", "|---:|---|---:|---:|"]
    for task_id, row in report["tasks"].items():
        lines.append(f"| {task_id} | {row['language']} | {row['successes']}/{row['episodes']} "
                     f"({row['success_rate']:.0%}) | {row['mean_steps']:.0f} |")
    total = len(report["episodes"])
    successes = sum(e["success"] for e in report["episodes"])
    lines += [f"| **all** | | **{successes}/{total} ({report['success_rate']:.1%})** | |", ""]
    return "\n".join(lines)
