"""Generate a LIBERO demonstration dataset (LeRobot format + modality.json) with the scripted expert.

Each task needs `episodes_per_task` successful demonstrations. Demonstration slot k of a task tries the
suite's init states k, k + N, k + 2N, ... (N = episodes per task, modulo the 50 init states) until the
expert succeeds or `attempts_per_episode` tries are spent; failed tries are dropped. Worker processes
write each success as `.npy` files into a scratch folder next to the output (so memory stays flat and an
interrupted run resumes where it stopped); the dataset is then written in one go and the scratch
folder removed.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from groot.data.modality import ArraySpec, ModalitySpec
from groot.data.writer import TASK_COLUMN, Episode, write_dataset
from groot.errors import ConfigError, OutputExistsError
from groot.sim import libero
from groot.utils.worker_pool import run_in_processes

ROBOT_TYPE = "libero_panda"


def libero_modality() -> ModalitySpec:
    """`libero_panda` layout: observation.state = eef_pos(3) | eef_axis_angle(3) | gripper_qpos(2),
    action = eef_delta_pos(3) | eef_delta_rot(3) | gripper(1)."""
    state = {
        "eef_pos": ArraySpec(0, 3, "observation.state"),
        "eef_axis_angle": ArraySpec(3, 6, "observation.state",
                                    rotation_type=libero.STATE_ROTATIONS["eef_axis_angle"]),
        "gripper_qpos": ArraySpec(6, 8, "observation.state"),
    }
    action = {
        "eef_delta_pos": ArraySpec(0, 3, "action", absolute=False),
        "eef_delta_rot": ArraySpec(3, 6, "action", rotation_type="axis_angle", absolute=False),
        "gripper": ArraySpec(6, 7, "action"),
    }
    video = {key: f"observation.images.{key}" for key in libero.VIDEO_KEYS}
    return ModalitySpec(state=state, action=action, video=video,
                        annotation={TASK_COLUMN.removeprefix("annotation."): TASK_COLUMN})


@dataclasses.dataclass(frozen=True)
class Job:
    """Demonstration slots `slots` of task `task_id`, produced by one worker with one env."""

    suite: str
    task_id: int
    slots: tuple[int, ...]
    slots_per_task: int
    attempts: int
    image_size: int
    noise: float
    seed: int
    scratch: str

    def folder(self, slot: int) -> Path:
        return Path(self.scratch) / f"task{self.task_id:03d}_slot{slot:04d}"


@dataclasses.dataclass
class SlotResult:
    task_id: int
    slot: int
    success: bool
    tries: int
    steps: int  # env steps of all tries
    seconds: float
    resumed: bool = False


def generate_dataset(suite: str, out: str | Path, episodes_per_task: int, tasks: Sequence[int] | None = None,
                     workers: int = 2, image_size: int = 128, noise: float = 0.0, seed: int = 0,
                     version: str = "v2.1", attempts_per_episode: int = 3, crf: int = 23,
                     progress: bool = True) -> dict[str, Any]:
    """Run the expert in `workers` processes and write the successful episodes to `out`.

    -> summary {"tasks": {task_id: {"language", "successes", "tries", "success_rate"}}, "episodes", "frames",
    "success_rate", "seconds_per_try", "env_steps_per_second", "dataset"}"""
    from tqdm import tqdm

    from groot.sim.experts import supports

    out = Path(out)
    if out.exists():
        raise OutputExistsError(f"{out} already exists; choose a new --out or remove it first")
    task_ids = list(range(libero.num_tasks(suite))) if not tasks else list(tasks)
    infos = {t: libero.task_info(suite, t) for t in task_ids}
    unsupported = [t for t, info in infos.items() if not supports(info.goal)]
    if unsupported:
        raise ConfigError(f"{suite} tasks {unsupported} are not single pick-and-place goals (e.g. "
                         f"{infos[unsupported[0]].goal}); the scripted expert cannot demonstrate them")
    scratch = out.parent / f".{out.name}.episodes"
    scratch.mkdir(parents=True, exist_ok=True)
    # small jobs keep every worker busy and the progress bar moving; each job builds one env (slow)
    size = max(1, min(5, -(-episodes_per_task * len(task_ids) // (2 * max(1, workers)))))
    jobs = [Job(suite, t, tuple(range(k, min(k + size, episodes_per_task))), episodes_per_task,
                attempts_per_episode, image_size, noise, seed, str(scratch))
            for t in task_ids for k in range(0, episodes_per_task, size)]
    results: list[SlotResult] = []
    started = time.perf_counter()
    finished = (run_in_processes(_run_job, jobs, workers, describe=_describe) if workers > 1
                else enumerate(map(_run_job, jobs)))
    with tqdm(total=len(task_ids) * episodes_per_task, desc=f"{suite} demos", unit="demo",
              disable=not progress) as bar:
        for _, job_results in finished:
            results.extend(job_results)
            fresh = [r for r in results if not r.resumed]
            rate = sum(r.success for r in fresh) / max(1, sum(r.tries for r in fresh))
            bar.set_postfix(expert_success=f"{rate:.0%}")
            bar.update(len(job_results))
    wall = time.perf_counter() - started
    results.sort(key=lambda r: (task_ids.index(r.task_id), r.slot))
    folders = {(job.task_id, slot): job.folder(slot) for job in jobs for slot in job.slots}
    episodes = [_load_episode(folders[r.task_id, r.slot], infos[r.task_id].language) for r in results
                if r.success]
    if not episodes:
        raise RuntimeError(f"the expert did not succeed once in {sum(r.tries for r in results)} tries")
    write_dataset(out, episodes, libero_modality(), fps=libero.CONTROL_FPS, version=version,
                  robot_type=ROBOT_TYPE, crf=crf)
    shutil.rmtree(scratch)
    return _summary(results, infos, episodes, wall, out)


def _describe(job: Job) -> str:
    return f"{job.suite} task {job.task_id} demonstrations {list(job.slots)}"


def _run_job(job: Job) -> list[SlotResult]:
    results, env = [], None
    try:
        for slot in job.slots:
            meta_path = job.folder(slot) / "meta.json"
            if meta_path.is_file():  # produced by an earlier, interrupted run
                meta = json.loads(meta_path.read_text())
                results.append(SlotResult(job.task_id, slot, meta["success"], meta["tries"], meta["steps"],
                                          0.0, resumed=True))
                continue
            if env is None:
                env = libero.LiberoEnv(job.suite, job.task_id, image_size=job.image_size, seed=job.seed)
            results.append(_run_slot(job, slot, env))
    finally:
        if env is not None:
            env.close()
    return results


def _run_slot(job: Job, slot: int, env: libero.LiberoEnv) -> SlotResult:
    from groot.sim.experts import run_expert_episode

    started = time.perf_counter()
    total_steps, success, tries = 0, False, 0
    while tries < job.attempts and not success:
        init_index = (slot + tries * job.slots_per_task) % env.task.num_init_states
        rng = np.random.default_rng([job.seed, job.task_id, slot, tries])
        rollout = run_expert_episode(env, init_index, rng, noise=job.noise)
        total_steps += rollout["steps"]
        tries += 1
        success = rollout["success"]
        if success:
            _save_episode(job.folder(slot), rollout, init_index)
    seconds = time.perf_counter() - started
    folder = job.folder(slot)
    folder.mkdir(parents=True, exist_ok=True)
    meta = {"success": success, "tries": tries, "steps": total_steps}
    (folder / "meta.json").write_text(json.dumps(meta))  # written last: marks the slot complete
    return SlotResult(job.task_id, slot, success, tries, total_steps, seconds)


def _save_episode(folder: Path, rollout: dict[str, Any], init_index: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    observations = rollout["observations"]
    state = np.stack([np.concatenate([o[f"state.{k}"] for k in libero.STATE_DIMS]) for o in observations])
    frames = np.stack([np.stack([o[f"video.{k}"] for o in observations]) for k in libero.VIDEO_KEYS])
    np.save(folder / "state.npy", state.astype(np.float32))  # [T, 8]
    np.save(folder / "action.npy", np.stack(rollout["actions"]).astype(np.float32))  # [T, 7]
    np.save(folder / "frames.npy", frames)  # uint8 [cameras, T, H, W, 3]
    (folder / "init.json").write_text(json.dumps({"init_state_index": init_index}))


def _load_episode(folder: Path, language: str) -> Episode:
    """Memory-mapped: frames are read from disk only while the writer encodes them."""
    state = np.load(folder / "state.npy", allow_pickle=False)
    action = np.load(folder / "action.npy", allow_pickle=False)
    frames = np.load(folder / "frames.npy", mmap_mode="r", allow_pickle=False)
    return Episode(task=language,
                   state=_split(state, libero.STATE_DIMS),
                   action=_split(action, libero.ACTION_DIMS),
                   video={key: frames[i] for i, key in enumerate(libero.VIDEO_KEYS)})


def _split(values: np.ndarray, dims: dict[str, int]) -> dict[str, np.ndarray]:
    ends = np.cumsum(list(dims.values()))
    return {key: values[:, end - dim:end] for (key, dim), end in zip(dims.items(), ends, strict=True)}


def _summary(results: list[SlotResult], infos: dict[int, libero.TaskInfo], episodes: list[Episode],
             wall: float, out: Path) -> dict[str, Any]:
    tasks = {}
    for task_id, info in infos.items():
        mine = [r for r in results if r.task_id == task_id]
        successes, tries = sum(r.success for r in mine), sum(r.tries for r in mine)
        tasks[task_id] = {"language": info.language, "successes": successes, "tries": tries,
                          "success_rate": successes / max(1, tries)}
    fresh = [r for r in results if not r.resumed]
    steps, seconds = sum(r.steps for r in fresh), sum(r.seconds for r in fresh)
    return {
        "dataset": str(out),
        "episodes": len(episodes),
        "frames": sum(e.length for e in episodes),
        "tasks": tasks,
        "success_rate": sum(r.success for r in results) / max(1, sum(r.tries for r in results)),
        "seconds_per_try": seconds / max(1, sum(r.tries for r in fresh)),
        "env_steps_per_second": steps / max(seconds, 1e-9),
        "wall_seconds": wall,
        "dataset_bytes": sum(f.stat().st_size for f in out.rglob("*") if f.is_file()),
    }


def format_summary(summary: dict[str, Any]) -> str:
    lines = [f"{'task':>4}  {'demos':>5}  {'tries':>5}  {'expert success':>14}  language"]
    for task_id, row in summary["tasks"].items():
        lines.append(f"{task_id:>4}  {row['successes']:>5}  {row['tries']:>5}  {row['success_rate']:>14.0%}  "
                     f"{row['language']}")
    lines.append(f"expert success {summary['success_rate']:.1%} | {summary['episodes']} episodes, "
                 f"{summary['frames']} frames | {summary['seconds_per_try']:.1f} s per try per process, "
                 f"{summary['env_steps_per_second']:.1f} env steps/s per process | wall "
                 f"{summary['wall_seconds']:.0f} s | {summary['dataset_bytes'] / 1e6:.1f} MB at "
                 f"{summary['dataset']}")
    return "\n".join(lines)
