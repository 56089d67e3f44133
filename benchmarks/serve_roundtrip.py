"""Inference-service overhead: what msgpack + ZeroMQ loopback add to one get_action.

    python benchmarks/serve_roundtrip.py                       # wire only: a policy that answers at once
    python benchmarks/serve_roundtrip.py --model-path CKPT --embodiment-tag new_embodiment \\
        --dataset-path DATASET                                 # + a real Policy, in-process vs served

Wire only: observations of `--cameras` uint8 frames of `--resolution`, a 64-d state and an instruction;
the answer is a 16 x 32 float32 chunk. Reports p50 / p99 ms of the round trip and of encode / decode
alone. With a checkpoint, the observation is a real dataset step and both paths run the same Policy.
JSON goes to benchmarks/results/serve_roundtrip.json (or --out).
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from groot.serve import protocol
from groot.serve.client import InferenceClient
from groot.serve.server import InferenceServer


class InstantPolicy:
    def get_action(self, observation):
        return {"action.all": np.zeros((16, 32), np.float32)}

    def get_modality_config(self):
        return {}


def percentiles(fn: Callable[[], object], iters: int, warmup: int = 5) -> dict[str, float]:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(iters):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    return {"p50_ms": float(np.percentile(times, 50)), "p99_ms": float(np.percentile(times, 99))}


def served(policy, observation, iters: int) -> dict[str, float]:
    with InferenceServer(policy, port=0, poll_interval_ms=5) as server:
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        with InferenceClient("127.0.0.1", server.port, timeout_ms=120_000) as client:
            result = percentiles(lambda: client.get_action(observation), iters)
        server.stop()
        thread.join()
    return result


def synthetic_observation(cameras: int, resolution: int) -> dict:
    rng = np.random.default_rng(0)
    obs = {f"video.cam{i}": rng.integers(0, 256, (1, resolution, resolution, 3), dtype=np.uint8)
           for i in range(cameras)}
    obs["state.all"] = rng.standard_normal((1, 64)).astype(np.float32)
    obs["annotation.human.action.task_description"] = ["pick up the red cube and put it in the bowl"]
    return obs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cameras", type=int, default=3)
    parser.add_argument("--resolution", type=int, default=256)
    parser.add_argument("--iters", type=int, default=200)
    parser.add_argument("--model-path")
    parser.add_argument("--embodiment-tag", default="new_embodiment")
    parser.add_argument("--dataset-path", help="dataset whose first step is the observation (--model-path)")
    parser.add_argument("--device")
    parser.add_argument("--out", default="benchmarks/results/serve_roundtrip.json")
    args = parser.parse_args()

    obs = synthetic_observation(args.cameras, args.resolution)
    message = protocol.pack_request("get_action", obs)
    report = {
        "observation_bytes": len(message),
        "encode": percentiles(lambda: protocol.pack_request("get_action", obs), args.iters),
        "decode": percentiles(lambda: protocol.parse_request(message), args.iters),
        "wire_round_trip": served(InstantPolicy(), obs, args.iters),
    }
    if args.model_path:
        from groot.data.dataset import GrootDataset
        from groot.policy import Policy

        policy = Policy.from_pretrained(args.model_path, args.embodiment_tag, device=args.device)
        step = GrootDataset(args.dataset_path, policy.data_config, args.embodiment_tag,
                            transform=False).raw_step(0, 0)
        real = {key: value for key, value in step.items() if not key.startswith("action.")}
        iters = max(10, args.iters // 10)
        report["policy_in_process"] = percentiles(lambda: policy.get_action(real), iters)
        report["policy_served"] = served(policy, real, iters)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    for name, value in report.items():
        print(f"{name:20s} {value}")


if __name__ == "__main__":
    main()
