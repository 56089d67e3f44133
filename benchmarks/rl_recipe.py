"""RL recipe: PPO (`groot rl`) from a supervised LIBERO policy made by `libero_recipe.py`, then the same
closed-loop evaluation as the supervised policy's -> `benchmarks/results/rl_<suite>_<preset>.json` and a
plot of success against environment episodes, as stages that resume.

    # a few-shot supervised policy (its own evaluation is the "before")
    python benchmarks/libero_recipe.py --suite libero_object --preset small --demos-per-task 5 \\
        --work-dir runs/lo_fewshot --results-name libero_object_small_fewshot --max-minutes 9
    # PPO from it: repeat the same command until it exits 0
    python benchmarks/rl_recipe.py --sft-dir runs/lo_fewshot --work-dir runs/lo_rl --iterations 40 \\
        --max-minutes 9

Stages: `rl` (`groot rl --resume` on SFT_DIR/export, stopped by the budget right after a checkpoint when
the next would not fit), `eval` (`groot eval sim` on the last RL checkpoint with the supervised run's
protocol: its tasks, fixed init states, episodes per task, action horizon, camera size, seed), then the
results JSON and PNG. By default PPO rolls out from the init states the evaluation uses (each task's
states 0 .. episodes-1, the reference's fixed reset states) and executes the evaluation's action horizon.
Exit status as for libero_recipe.py: 0 finished, 3 run the same command again, 1 a stage failed.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import libero_recipe as sft  # noqa: E402 (the supervised recipe beside this file)

STAGES = ("rl", "eval")
RL_DIR, EVAL_DIR = "rl", "eval"
# settings that define a run: a work dir holds one run
RUN_SETTINGS = ("sft_dir", "iterations", "init_states_per_task", "max_episode_steps", "save_every",
                "eval_every", "seed", "rl_flags")


# ---- the supervised run this one starts from -------------------------------------------------------
def supervised_run(sft_dir: Path) -> dict[str, Any]:
    """The settings, evaluation and exported policy of a finished libero_recipe.py work dir."""
    state = sft.finished_run(sft_dir, ("export", "eval"))
    evaluation = sft.merged_eval(sft_dir / "eval")
    return {"settings": state["settings"], "evaluation": evaluation, "export": sft_dir / "export",
            "eval_device": state["stages"]["eval"].get("device")}


def eval_protocol(args: argparse.Namespace, before: dict[str, Any]) -> argparse.Namespace:
    """The supervised run's evaluation protocol with this machine's evaluation flags, in the attribute
    names `libero_recipe.evaluate_checkpoint` reads."""
    settings = before["settings"]
    return argparse.Namespace(
        suite=settings["suite"], tasks=settings["tasks"], eval_episodes=settings["eval_episodes"],
        action_horizon=settings["action_horizon"], image_size=settings["image_size"], seed=settings["seed"],
        eval_max_steps=settings["eval_max_steps"], video=args.video, eval_device=args.eval_device,
        eval_workers=args.eval_workers)


# ---- stages ----------------------------------------------------------------------------------------
def rl_command(args: argparse.Namespace, work: Path, protocol: argparse.Namespace, export: Path) -> list[str]:
    tasks = sft.resolve_tasks(protocol)
    command = sft.groot(
        "rl", "--model-path", export, "--embodiment-tag", sft.TAG, "--output-dir", work / RL_DIR,
        "--suite", protocol.suite, "--tasks", *tasks, "--num-envs", args.init_states_per_task * len(tasks),
        "--workers", args.workers, "--image-size", protocol.image_size,
        "--executed-steps", protocol.action_horizon, "--iterations", args.iterations,
        "--save-every", args.save_every, "--save-total-limit", 2, "--eval-every", args.eval_every,
        "--seed", args.seed, "--resume")
    max_steps = args.max_episode_steps or protocol.eval_max_steps
    if max_steps is None:
        from groot.sim.libero import SUITE_MAX_STEPS

        max_steps = SUITE_MAX_STEPS[protocol.suite]
    command += ["--max-episode-steps", str(max_steps)]
    if args.device:
        command += ["--device", args.device]
    return command + shlex.split(args.rl_flags)


def stage_rl(args: argparse.Namespace, work: Path, budget: sft.Budget, state: sft.RecipeState,
             before: dict[str, Any]) -> bool:
    """`groot rl --resume` to --iterations; stopped only right after a checkpoint (or at the budget
    when one interval outlasts it: the next call resumes from the last checkpoint)."""
    from groot.train.checkpointing import checkpoint_dir, is_complete

    state.stage("rl").setdefault("device", sft.describe_device())
    command = rl_command(args, work, eval_protocol(args, before), before["export"])
    finished = sft.run_bounded(command, budget, sft.CheckpointWatch(work / RL_DIR, budget))
    return finished and is_complete(checkpoint_dir(work / RL_DIR, args.iterations))


def stage_eval(args: argparse.Namespace, work: Path, budget: sft.Budget, state: sft.RecipeState,
               before: dict[str, Any]) -> bool:
    """The last RL checkpoint evaluated as the supervised policy was, then the results JSON and PNG."""
    from groot.train.checkpointing import checkpoint_dir

    final = checkpoint_dir(work / RL_DIR, args.iterations)
    protocol = eval_protocol(args, before)
    if not sft.evaluate_checkpoint(protocol, final, work / EVAL_DIR, budget, state, "eval"):
        return False
    write_results(args, work, state, before)
    return True


# ---- results ---------------------------------------------------------------------------------------
def learning_curve(metrics_jsonl: Path) -> list[dict[str, float]]:
    """Per PPO iteration: environment episodes used so far, training success (stochastic rollouts) and,
    where one was run, the deterministic evaluation's success."""
    curve, episodes = [], 0.0
    for line in metrics_jsonl.read_text().splitlines():
        row = json.loads(line)
        if "episodes" not in row:
            raise sft.RecipeError(f"{metrics_jsonl}: key 'episodes': expected in every row, found the "
                                  f"keys {sorted(row)}")
        episodes += row["episodes"]
        point = {"iteration": int(row["iteration"]), "env_episodes": int(episodes),
                 "success_rate": row["success_rate"]}
        if "eval_success_rate" in row:
            point["eval_success_rate"] = row["eval_success_rate"]
        curve.append(point)
    return curve


def write_results(args: argparse.Namespace, work: Path, state: sft.RecipeState,
                  before: dict[str, Any]) -> Path:
    """<results-dir>/rl_<suite>_<preset>.json (or --results-name) and the curve's PNG beside it."""
    after = sft.merged_eval(work / EVAL_DIR)
    settings = before["settings"]
    curve = learning_curve(work / RL_DIR / "metrics.jsonl")
    stages = state.data["stages"]
    rate = {name: run["successes"] / max(1, run["episodes"])
            for name, run in (("before", before["evaluation"]), ("after", after))}
    result = {
        "suite": settings["suite"],
        "preset": settings["preset"],
        "success_before": rate["before"],
        "success_after": rate["after"],
        "eval_episodes": after["episodes"],
        "eval_episodes_before": before["evaluation"]["episodes"],
        "tasks": {task: {"before": before["evaluation"]["tasks"].get(task), "after": row}
                  for task, row in after["tasks"].items()},
        "protocol": after["protocol"],
        "iterations": args.iterations,
        "env_episodes": curve[-1]["env_episodes"] if curve else 0,
        "curve": curve,
        "rl_time_s": round(stages["rl"]["seconds"], 1),
        "eval_time_s": round(sum(stages["eval"].get("group_seconds", [])), 1),
        "device": stages["rl"].get("device"),
        "device_eval": stages["eval"].get("device"),
        "supervised": {"settings": settings, "eval_device": before["eval_device"]},
        "settings": state.data["settings"],
        "command": "python benchmarks/rl_recipe.py " + shlex.join(sft.settings_flags(state.data["settings"])),
        "recorded": time.strftime("%Y-%m-%d", time.gmtime()),
    }
    name = args.results_name or f"rl_{settings['suite']}_{settings['preset']}"
    path = Path(args.results_dir) / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=1) + "\n")
    plot_curve(result, path.with_suffix(".png"))
    print(f"results: {path}  success {rate['before']:.1%} -> {rate['after']:.1%} "
          f"({after['episodes']} episodes each, {result['env_episodes']} PPO episodes)")
    return path


def plot_curve(result: dict[str, Any], path: Path) -> None:
    """Success against PPO environment episodes: stochastic rollouts, deterministic evaluations, and the
    supervised policy's and the final policy's closed-loop success as horizontal lines."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7, 4), dpi=120)
    axes = figure.subplots()
    curve = result["curve"]
    axes.plot([p["env_episodes"] for p in curve], [p["success_rate"] for p in curve], ".-",
              label="PPO rollouts (flow-SDE)")
    evaluated = [p for p in curve if "eval_success_rate" in p]
    if evaluated:
        axes.plot([p["env_episodes"] for p in evaluated], [p["eval_success_rate"] for p in evaluated], "o-",
                  label="deterministic rollouts of the training envs")
    for key, style, label in (("success_before", "--", "supervised"), ("success_after", ":", "after PPO")):
        axes.axhline(result[key], linestyle=style, color="gray" if key == "success_before" else "black",
                     label=f"{label}: {result[key]:.1%} of {result['eval_episodes']} episodes")
    axes.set(xlabel="PPO environment episodes", ylabel="success rate", ylim=(-0.02, 1.02),
             title=f"{result['suite']}, {result['preset']}: PPO from the supervised policy")
    axes.grid(alpha=0.3)
    axes.legend(loc="lower right", fontsize=8)
    figure.tight_layout()
    figure.savefig(path)


# ---- driver ----------------------------------------------------------------------------------------
def run(args: argparse.Namespace) -> int:
    before = supervised_run(Path(args.sft_dir))
    if args.init_states_per_task is None:
        args.init_states_per_task = before["settings"]["eval_episodes"]
    work = Path(args.work_dir)
    settings = {key: getattr(args, key) for key in RUN_SETTINGS}
    settings["sft_dir"] = str(Path(args.sft_dir).resolve())
    state = sft.RecipeState(work, settings)
    budget = sft.Budget(args.max_minutes)
    actions: dict[str, Callable[[], bool]] = {
        "rl": lambda: stage_rl(args, work, budget, state, before),
        "eval": lambda: stage_eval(args, work, budget, state, before),
    }
    return sft.run_stages(state, budget, actions, STAGES)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work-dir", default="rl_run",
                   help="folder of one run: rl/ (groot rl output), eval/, recipe_state.json "
                        "(default: rl_run)")
    p.add_argument("--max-minutes", type=float, default=None,
                   help="wall-time budget of this call; stages stop at a clean boundary before it ends "
                        "and the same command continues (default: no limit)")
    p.add_argument("--results-dir", default=str(sft.RESULTS_DIR),
                   help="where the results JSON and its PNG go (default: benchmarks/results)")
    p.add_argument("--results-name", default=None,
                   help="name of the results JSON without .json (default: rl_<suite>_<preset>)")
    run_group = p.add_argument_group("the run (fixed for a work dir)")
    run_group.add_argument("--sft-dir", required=True,
                           help="work dir of a finished libero_recipe.py run: its export/ is the starting "
                                "policy, its evaluation the 'before' and the protocol of the 'after'")
    run_group.add_argument("--iterations", type=int, default=40, help="PPO iterations (default: 40)")
    run_group.add_argument("--init-states-per-task", type=int, default=None,
                           help="environments per task, starting from the task's fixed init states 0..N-1 "
                                "(default: the evaluation's episodes per task)")
    run_group.add_argument("--max-episode-steps", type=int, default=None,
                           help="environment steps per PPO episode (default: the evaluation's limit)")
    run_group.add_argument("--save-every", type=int, default=5,
                           help="checkpoint every N iterations: the granularity at which a bounded call "
                                "stops and the next resumes (default: 5)")
    run_group.add_argument("--eval-every", type=int, default=5,
                           help="deterministic rollouts of the training environments every N iterations, "
                                "points of the curve (default: 5)")
    run_group.add_argument("--seed", type=int, default=0, help="seed of groot rl (default: 0)")
    run_group.add_argument("--rl-flags", default="",
                           help="further groot rl flags, one quoted string, e.g. \"--actor-lr 5e-5 "
                                "--noise-level 0.3\" (default: the small recipe's; see groot rl --help)")
    machine = p.add_argument_group("this machine (may change between calls)")
    machine.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 2) - 1),
                         help="environment processes of groot rl (default: CPU cores - 1)")
    machine.add_argument("--device", default=None,
                         help="torch device of groot rl (default: cuda if available)")
    sft.add_eval_flags(machine)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    return sft.command_main(parser, run, argv)


if __name__ == "__main__":
    sys.exit(main())
