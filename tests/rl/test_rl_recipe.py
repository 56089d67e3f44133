"""benchmarks/rl_recipe.py: the supervised run it starts from, the `groot rl` command it builds, the
learning curve, and (with the simulator) a whole tiny run: PPO, the evaluation under the supervised run's
protocol, the results JSON and its plot."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
from rl_helpers import CAMERA

from groot.sim.libero import libero_available

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def load(name: str):
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


rl_recipe = load("rl_recipe")
sft = rl_recipe.sft


def supervised_dir(root: Path, export: Path, successes: int = 1, episodes: int = 2,
                   done: tuple[str, ...] = ("generate", "train", "export", "eval")) -> Path:
    """A libero_recipe.py work dir as its stages leave it: settings, stages, export/, eval reports."""
    work = root / "sft"
    (work / "eval" / "tasks_0").mkdir(parents=True)
    (work / "export").symlink_to(export)
    settings = {"suite": "libero_object", "preset": "tiny", "tasks": [0], "demos_per_task": 1, "noise": 0.0,
                "image_size": CAMERA, "seed": 0, "max_steps": 4, "batch_size": 2, "learning_rate": 3e-4,
                "save_steps": 2, "eval_episodes": episodes, "action_horizon": 4, "eval_max_steps": 8}
    stages = {name: {"done": True, "seconds": 1.0, "device": "CPU only"} for name in done}
    (work / sft.STATE_FILE).write_text(json.dumps({"settings": settings, "stages": stages}))
    protocol = {"suite": "libero_object", "episodes_per_task": episodes, "action_horizon": 4, "seed": 0,
                "image_size": CAMERA, "video": "none", "max_steps": 8}
    task = {"language": "pick", "successes": successes, "episodes": episodes,
            "success_rate": successes / episodes}
    report = {"protocol": protocol, "tasks": {"0": task}}
    (work / "eval" / "tasks_0" / "report.json").write_text(json.dumps(report))
    return work


def test_an_unfinished_supervised_run_is_refused_with_its_file_and_key(tmp_path, capsys):
    work = supervised_dir(tmp_path, tmp_path, done=("generate", "train"))
    assert rl_recipe.main(["--sft-dir", str(work), "--work-dir", str(tmp_path / "rl")]) == 1
    error = capsys.readouterr().err
    assert error.startswith("error: ") and str(work / sft.STATE_FILE) in error and "'stages'" in error
    assert "export, eval unfinished" in error
    assert rl_recipe.main(["--sft-dir", str(tmp_path / "none"), "--work-dir", str(tmp_path / "rl")]) == 1
    assert "expected the state of a libero_recipe.py run" in capsys.readouterr().err


def test_ppo_rolls_out_from_the_evaluated_init_states_with_the_evaluated_horizon(tmp_path):
    work = supervised_dir(tmp_path, tmp_path, episodes=3)
    args = rl_recipe.parser().parse_args(["--sft-dir", str(work), "--init-states-per-task", "3",
                                          "--rl-flags", "--actor-lr 1e-5 --noise-level 0.3"])
    before = rl_recipe.supervised_run(work)
    command = rl_recipe.rl_command(args, tmp_path / "rl", rl_recipe.eval_protocol(args, before),
                                   before["export"])

    def value(flag: str) -> str:
        return command[command.index(flag) + 1]

    assert (value("--suite"), value("--tasks"), value("--num-envs")) == ("libero_object", "0", "3")
    assert value("--executed-steps") == "4" and value("--max-episode-steps") == "8"
    assert value("--image-size") == "32"
    assert value("--model-path") == str(work / "export") and "--resume" in command
    assert command[-4:] == ["--actor-lr", "1e-5", "--noise-level", "0.3"]


def test_the_learning_curve_counts_the_episodes_of_every_iteration(tmp_path):
    metrics = tmp_path / "metrics.jsonl"
    rows = [{"iteration": 1, "episodes": 20.0, "success_rate": 0.4},
            {"iteration": 2, "episodes": 20.0, "success_rate": 0.5, "eval_success_rate": 0.55}]
    metrics.write_text("".join(json.dumps(row) + "\n" for row in rows))
    assert rl_recipe.learning_curve(metrics) == [
        {"iteration": 1, "env_episodes": 20, "success_rate": 0.4},
        {"iteration": 2, "env_episodes": 40, "success_rate": 0.5, "eval_success_rate": 0.55}]
    metrics.write_text(json.dumps({"iteration": 1, "success_rate": 0.4}) + "\n")
    with pytest.raises(sft.RecipeError, match="key 'episodes'"):
        rl_recipe.learning_curve(metrics)


@pytest.mark.sim
@pytest.mark.slow
@pytest.mark.skipif(not libero_available(), reason="needs the LIBERO simulator (the `sim` extra)")
def test_a_tiny_run_trains_evaluates_and_records_before_and_after(tiny_libero_checkpoint, tmp_path, capsys):
    work = supervised_dir(tmp_path, tiny_libero_checkpoint, successes=1, episodes=1)
    results = tmp_path / "results"
    argv = ["--sft-dir", str(work), "--work-dir", str(tmp_path / "rl"), "--results-dir", str(results),
            "--iterations", "2", "--save-every", "1", "--eval-every", "2", "--workers", "1",
            "--device", "cpu", "--eval-workers", "1", "--eval-device", "cpu", "--video", "none",
            "--rl-flags", "--rollout-epochs 1 --update-epochs 1 --global-batch-size 2 --micro-batch-size 1 "
                          "--value-hidden 16 --no-tensorboard --eval-videos 0"]
    assert rl_recipe.main(argv) == 0
    result = json.loads((results / "rl_libero_object_tiny.json").read_text())
    assert (result["suite"], result["preset"], result["success_before"]) == ("libero_object", "tiny", 1.0)
    assert 0.0 <= result["success_after"] <= 1.0 and result["eval_episodes"] == 1
    assert result["protocol"]["action_horizon"] == 4 and result["protocol"]["max_steps"] == 8
    assert [(p["iteration"], p["env_episodes"]) for p in result["curve"]] == [(1, 1), (2, 2)]
    assert "eval_success_rate" in result["curve"][1] and result["rl_time_s"] > 0
    assert result["tasks"]["0"]["before"]["successes"] == 1
    assert (results / "rl_libero_object_tiny.png").stat().st_size > 0
    # the evaluated policy is the last PPO checkpoint
    assert (tmp_path / "rl" / "rl" / "checkpoint-2" / "model.safetensors").is_file()
    assert rl_recipe.main(argv) == 0  # everything done: nothing runs again
    assert capsys.readouterr().out.count("done earlier: skipped") == len(rl_recipe.STAGES)
