"""LIBERO step cost: rendering the cameras at every step against only at the last step of each executed
chunk (what closed-loop evaluation without videos and PPO rollouts do), in one process.

    python benchmarks/sim_step.py --suite libero_object --image-size 128 --steps 200 --chunk 8 \\
        --out benchmarks/results/sim_step_cpu.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np


def timed_steps(env, actions: np.ndarray, chunk: int | None) -> float:
    """Seconds per step of `actions` from init state 0; `chunk=None` renders every step."""
    env.reset(0)
    started = time.perf_counter()
    for i, action in enumerate(actions):
        env.step(action, render=chunk is None or i % chunk == chunk - 1)
    return (time.perf_counter() - started) / len(actions)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--suite", default="libero_object", help="LIBERO suite (default: libero_object)")
    p.add_argument("--task", type=int, default=0, help="task id (default: 0)")
    p.add_argument("--image-size", type=int, default=128, help="camera resolution (default: 128)")
    p.add_argument("--steps", type=int, default=200, help="steps timed per mode (default: 200)")
    p.add_argument("--chunk", type=int, default=8, help="executed steps per policy call (default: 8)")
    p.add_argument("--out", default=None, help="write the results JSON here (default: print only)")
    args = p.parse_args(argv)

    from groot.sim.libero import LiberoEnv, configure_headless_rendering

    renderer = configure_headless_rendering()
    rng = np.random.default_rng(0)
    actions = rng.uniform(-0.3, 0.3, size=(args.steps, 7))
    actions[:, 6] = np.sign(actions[:, 6])
    with LiberoEnv(args.suite, args.task, image_size=args.image_size) as env:
        timed_steps(env, actions[:10], None)  # warm-up: first renders, caches
        every = timed_steps(env, actions, None)
        chunk_end = timed_steps(env, actions, args.chunk)
    import torch

    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"CPU ({platform.machine()})"
    result = {"suite": args.suite, "task": args.task, "image_size": args.image_size, "steps": args.steps,
              "chunk": args.chunk, "renderer": renderer, "device": f"{device}, {os.cpu_count()} cores",
              "ms_per_step_render_every_step": round(1e3 * every, 2),
              "ms_per_step_render_chunk_end": round(1e3 * chunk_end, 2),
              "speedup": round(every / chunk_end, 2),
              "command": "python benchmarks/sim_step.py " + " ".join(sys.argv[1:] if argv is None else argv)}
    print(json.dumps(result, indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
