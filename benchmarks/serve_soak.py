"""Soak test of `groot serve`: many sequential get_action requests against one server process.

    python benchmarks/serve_soak.py                       # 10,000 requests, tiny preset, CPU
    python benchmarks/serve_soak.py --requests 2000 --out /tmp/soak.json

Writes a random tiny checkpoint and a small synthetic dataset (the observation is its first step),
starts `groot serve` on 127.0.0.1 in a subprocess and sends `--requests` requests from one client.
Reports errors, p50 / p99 request time and the server's resident memory sampled every `--sample-every`
requests (does it stay flat?). JSON goes to benchmarks/results/serve_soak_cpu.json (or --out).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

TAG = "new_embodiment"


def make_checkpoint(root: Path) -> tuple[Path, Path]:
    from groot.data.configs import DataConfig
    from groot.data.dataset import GrootDataset
    from groot.data.synthetic import make_synthetic_dataset
    from groot.data.writer import TASK_COLUMN
    from groot.model.gr00t_n15 import GR00TN15

    dataset = make_synthetic_dataset(root / "dataset", num_episodes=2, episode_length=20, image_size=64)
    model = GR00TN15.from_preset("tiny")
    state, action = ["state.arm", "state.gripper"], ["action.arm", "action.gripper"]
    config = DataConfig("synthetic", ["video.front"], state, action, [TASK_COLUMN],
                        state_normalization=dict.fromkeys(state, "min_max"),
                        action_normalization=dict.fromkeys(action, "min_max"),
                        image_size=model.config.backbone_cfg.vision.image_size, color_jitter=None)
    metadata = GrootDataset(dataset, config, TAG).metadata
    return model.save_pretrained(root / "checkpoint", metadata={TAG: metadata}, data_config=config), dataset


def first_observation(checkpoint: Path, dataset: Path) -> dict:
    from groot.data.dataset import GrootDataset
    from groot.policy import Policy

    policy = Policy.from_pretrained(checkpoint, TAG, device="cpu")
    step = GrootDataset(dataset, policy.data_config, TAG).raw_step(0, 0)
    return {key: (value if key.startswith("annotation.") else np.asarray(value))
            for key, value in step.items() if not key.startswith("action.")}


def resident_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=10_000, help="get_action requests to send")
    parser.add_argument("--sample-every", type=int, default=500, help="requests between memory samples")
    parser.add_argument("--port", type=int, default=5577, help="loopback port of the server")
    parser.add_argument("--out", default="benchmarks/results/serve_soak_cpu.json", help="result JSON")
    args = parser.parse_args()

    from groot.serve.client import InferenceClient, ServerError

    with tempfile.TemporaryDirectory() as tmp:
        checkpoint, dataset = make_checkpoint(Path(tmp))
        observation = first_observation(checkpoint, dataset)
        command = [sys.executable, "-m", "groot.cli", "serve", "--model-path", str(checkpoint),
                   "--embodiment-tag", TAG, "--port", str(args.port), "--device", "cpu"]
        server = subprocess.Popen(command,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                  env={**os.environ, "OMP_NUM_THREADS": "1"})
        try:
            with InferenceClient("127.0.0.1", args.port, timeout_ms=60_000) as client:
                deadline = time.monotonic() + 120
                while not client.ping():
                    if time.monotonic() > deadline:
                        raise SystemExit("the server did not start")
                    time.sleep(0.5)
                seconds, errors, memory = [], 0, [(0, resident_mb(server.pid))]
                for number in range(1, args.requests + 1):
                    started = time.perf_counter()
                    try:
                        client.get_action(observation)
                    except ServerError:
                        errors += 1
                    seconds.append(time.perf_counter() - started)
                    if number % args.sample_every == 0:
                        memory.append((number, resident_mb(server.pid)))
                        print(f"{number} requests, {errors} errors, server {memory[-1][1]:.0f} MB",
                              flush=True)
        finally:
            server.terminate()
            server.wait(timeout=30)
    ms = np.array(seconds) * 1000
    result = {"requests": args.requests, "errors": errors, "p50_ms": float(np.percentile(ms, 50)),
              "p99_ms": float(np.percentile(ms, 99)), "server_rss_mb": memory,
              "machine": f"{platform.machine()}, {os.cpu_count()} cores", "preset": "tiny", "device": "cpu"}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "server_rss_mb"}, indent=2))


if __name__ == "__main__":
    main()
