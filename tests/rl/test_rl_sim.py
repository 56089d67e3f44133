"""`groot rl` end to end in the LIBERO simulator: a few PPO iterations of the tiny preset (CPU)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from groot.sim import libero

pytestmark = [
    pytest.mark.sim,
    pytest.mark.slow,
    pytest.mark.skipif(
        not libero.libero_available(), reason="LIBERO not installed (pip install 'groot[sim]')"
    ),
]


def test_groot_rl_smoke_run_in_the_simulator(tiny_libero_checkpoint, tmp_path):
    from groot.cli import main

    out = tmp_path / "rl"
    argv = [
        "rl",
        "--model-path",
        str(tiny_libero_checkpoint),
        "--output-dir",
        str(out),
        "--suite",
        "libero_object",
        "--tasks",
        "0",
        "--num-envs",
        "2",
        "--workers",
        "2",
        "--image-size",
        "32",
        "--max-episode-steps",
        "16",
        "--executed-steps",
        "8",
        "--iterations",
        "2",
        "--rollout-epochs",
        "1",
        "--update-epochs",
        "1",
        "--global-batch-size",
        "4",
        "--micro-batch-size",
        "2",
        "--value-hidden",
        "16",
        "--eval-every",
        "2",
        "--eval-videos",
        "1",
        "--save-every",
        "2",
        "--device",
        "cpu",
        "--no-tensorboard",
    ]
    assert main(argv) == 0
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in rows] == [1, 2]
    # 16 steps, 8 per call: 2 policy calls per environment, every episode runs to the step limit
    assert all(r["transitions"] == 4 and r["episode_steps"] == 16 for r in rows)
    assert all(np.isfinite(r[k]) for r in rows for k in ("approx_kl", "value_loss", "grad_norm", "return"))
    assert rows[1]["eval_success_rate"] == 0.0
    assert len(list((out / "videos").glob("iter00002_env000_failure.mp4"))) == 1
    checkpoint = out / "checkpoint-2"
    assert (checkpoint / "model.safetensors").is_file()
    assert (checkpoint / "training_state" / "value_head.safetensors").is_file()
    # the checkpoint is a servable policy
    from groot.policy import Policy

    policy = Policy.from_pretrained(checkpoint, device="cpu")
    with libero.LiberoEnv("libero_object", 0, image_size=32, settle_steps=0) as env:
        chunk = policy.get_action(libero.policy_observation(env.reset(0)))
    assert chunk["action.eef_delta_pos"].shape == (16, 3)
