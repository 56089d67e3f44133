"""benchmarks/rl_iteration.py on the CPU: `groot rl`'s loop at a tiny scale, its phase counts, the JSON
record and a real update."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "rl_iteration.py"


def load_benchmark():
    spec = importlib.util.spec_from_file_location("rl_iteration", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


bench = load_benchmark()


@pytest.mark.parametrize(("preset", "iterations"), [("tiny", 2), ("n1.6-tiny", 1)])
def test_iterations_run_groot_rl_and_record_every_phase(preset, iterations, tmp_path):
    out = tmp_path / "result.json"
    envs, steps, update_epochs = 3, 16, 1
    args = ["--preset", preset, "--device", "cpu", "--num-envs", str(envs), "--max-episode-steps", str(steps),
            "--update-epochs", str(update_epochs), "--global-batch-size", "4", "--micro-batch-size", "3",
            "--iterations", str(iterations), "--camera", "32", "--out", str(out)]
    result = bench.main(args)
    assert json.loads(out.read_text()) == json.loads(json.dumps(result))
    assert result["command"].endswith(" ".join(args)) and result["device"].startswith("cpu")
    assert result["torch"] and result["preset"] == preset
    settings = result["settings"]
    assert settings["recipe"] == "small" and settings["executed_steps"] == 8  # the rest from the recipe
    assert (settings["num_envs"], settings["max_episode_steps"], settings["update_epochs"]) == (
        envs, steps, update_epochs)
    calls = steps // 8  # no episode succeeds: each runs max_episode_steps
    transitions = envs * calls  # 6: optimizer steps of 4 and 2 transitions, micro-batches of 3 + 1 and 2
    assert len(result["iterations"]) == iterations
    for it in result["iterations"]:
        rollout, update = it["rollout"], it["update"]
        assert rollout["policy_calls"] == calls and rollout["transitions"] == transitions
        assert rollout["env_steps"] == envs * steps and it["loop"]["episode_steps"] == steps
        assert 0 < rollout["model_s"] < rollout["seconds"] and rollout["host_s"] > 0
        assert (update["optimizer_steps"], update["micro_batches"]) == (2, 3)
        assert update["peak_allocated_gib"] is None  # no CUDA memory on the CPU
        assert it["loop"]["transitions"] == transitions
    # the recipe's 1 rollout / 4 update epochs: the update scaled by 4 / 1
    estimate = result["recipe_epochs_estimate"]
    assert estimate["update_s"] == pytest.approx(4 * result["iterations"][-1]["update"]["seconds"])
    assert estimate["rollout_s"] == pytest.approx(result["iterations"][-1]["rollout"]["seconds"])
    params = result["parameters"]
    assert 0 < params["trainable"]["count"] < params["policy"]["count"]
    assert sum(params["trainable"]["by_module"].values()) == params["trainable"]["count"]
    assert all(name.startswith("action_head.") for name in params["trainable"]["by_module"])
    assert params["policy"]["bf16_gib"] == pytest.approx(params["policy"]["held_gib"] / 2)
    # Adam moves each weight with a gradient by about the learning rate per step; weight decay alone
    # would move it by lr * 0.01 * |w|
    assert result["weights"]["policy"]["max_abs_change"] > 0.5 * settings["actor_lr"]
    assert result["weights"]["value_head"]["max_abs_change"] > 0.5 * settings["value_lr"]


def test_device_names_become_file_slugs():
    assert bench.device_slug("NVIDIA H200") == "h200"
    assert bench.device_slug("NVIDIA GeForce RTX 4090") == "geforce_rtx_4090"
    assert bench.device_slug("cpu-x86_64") == "cpu"


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_on_a_gpu_every_phase_reports_its_peak_memory(tmp_path):
    out = str(tmp_path / "gpu.json")
    result = bench.main(["--preset", "small", "--device", "cuda", "--num-envs", "4",
                         "--max-episode-steps", "16", "--update-epochs", "1", "--out", out])
    assert result["settings"]["bf16_autocast"] is True
    after_build = result["setup"]["allocated_after_build_gib"]
    assert after_build >= result["parameters"]["policy"]["held_gib"]
    for name in ("rollout", "update"):
        phase = result["iterations"][0][name]
        assert after_build < phase["peak_allocated_gib"] <= phase["peak_reserved_gib"], name
    assert result["weights"]["policy"]["changed"] and result["weights"]["value_head"]["changed"]
