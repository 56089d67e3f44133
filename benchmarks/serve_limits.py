"""Worst-case get_action time under `groot serve`'s default request limits (tiny preset, CPU).

    python benchmarks/serve_limits.py                 # all cases; the longest prompt takes ~1 min
    python benchmarks/serve_limits.py --skip-longest  # without the single longest prompt

A tiny random-weight checkpoint (byte tokenizer: one token per byte) is served on 127.0.0.1 with the
default limits. Accepted cases (after the refused ones, so the peak RSS of a refusal is not theirs): an
ordinary request; one prompt exactly at the token limit (the model's
positions, 40960); a batch of `max_batch_size` prompts that pad to the token limit together. Refused
cases: over each limit, timed to the error reply. Reports wall time per request (the slowest of
`--iters`) and the process's peak RSS after each case; JSON to benchmarks/results/serve_limits_cpu.json.
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import resource
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import torch

from groot.data.configs import DataConfig
from groot.data.dataset import GrootDataset
from groot.data.synthetic import make_synthetic_dataset
from groot.data.writer import TASK_COLUMN
from groot.model.gr00t_n15 import GR00TN15
from groot.model.processor import render_prompt
from groot.policy import Policy
from groot.serve.client import InferenceClient, ServerError
from groot.serve.limits import RequestLimits
from groot.serve.server import InferenceServer

TAG = "new_embodiment"


def tiny_policy(root: Path) -> tuple[Policy, dict]:
    """A random tiny Policy and one raw observation (1 camera at 24x32, 7-d state) of its dataset."""
    torch.manual_seed(0)
    dataset_path = make_synthetic_dataset(root / "dataset", num_episodes=1, episode_length=4,
                                          image_size=(24, 32))
    model = GR00TN15.from_preset("tiny")
    state, action = ["state.arm", "state.gripper"], ["action.arm", "action.gripper"]
    config = DataConfig("synthetic", ["video.front"], state, action, [TASK_COLUMN],
                        state_normalization={k: "min_max" for k in state},
                        action_normalization={k: "min_max" for k in action},
                        image_size=model.config.backbone_cfg.vision.image_size, color_jitter=None)
    dataset = GrootDataset(dataset_path, config, TAG)
    checkpoint = model.save_pretrained(root / "checkpoint", metadata={TAG: dataset.metadata},
                                       data_config=config)
    policy = Policy.from_pretrained(checkpoint, TAG, device="cpu")
    step = GrootDataset(dataset_path, config, TAG, transform=False).raw_step(0, 0)
    return policy, {key: value for key, value in step.items() if not key.startswith("action.")}


def batched(obs: dict, texts: list[str]) -> dict:
    out = {key: np.stack([value] * len(texts)) for key, value in obs.items() if key != TASK_COLUMN}
    return {**out, TASK_COLUMN: texts}


def text_of_tokens(policy: Policy, tokens: int) -> str:
    """An instruction whose whole prompt (template, image tokens) is exactly `tokens` byte tokens."""
    overhead = len(policy.processor.tokenizer.encode(render_prompt("", 1, policy.processor.num_image_tokens)))
    return "x" * (tokens - overhead)


def timed(client: InferenceClient, observation: dict, iters: int) -> dict:
    times, outcome = [], "served"
    for _ in range(iters):
        start = time.perf_counter()
        try:
            client.get_action(observation)
        except ServerError as e:
            outcome = f"refused: {str(e)[:160]}"
        times.append(time.perf_counter() - start)
    return {"outcome": outcome, "max_s": round(max(times), 4), "min_s": round(min(times), 4),
            "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iters", type=int, default=3, help="requests per case (the longest prompt: 1)")
    parser.add_argument("--skip-longest", action="store_true")
    parser.add_argument("--out", default="benchmarks/results/serve_limits_cpu.json")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)  # the server logs every refusal as a warning

    limits = RequestLimits()
    with tempfile.TemporaryDirectory() as tmp:
        policy, obs = tiny_policy(Path(tmp))
    positions = policy.max_prompt_tokens
    batch = limits.max_batch_size
    cases = {
        "ordinary (1 prompt, 20 chars)": (obs, args.iters),
        "refused: 5 MB prompt (chars)": ({**obs, TASK_COLUMN: ["x" * 5_000_000]}, args.iters),
        f"refused: prompt of {positions + 1} tokens": (
            {**obs, TASK_COLUMN: [text_of_tokens(policy, positions + 1)]}, args.iters),
        f"refused: batch {batch + 1}": (batched(obs, ["pick"] * (batch + 1)), args.iters),
        f"refused: {limits.max_frames + 1} frames": (
            {**obs, "video.front": np.zeros((limits.max_frames + 1, 24, 32, 3), np.uint8)}, args.iters),
        "refused: 4097x32 frame": ({**obs, "video.front": np.zeros((1, 4097, 32, 3), np.uint8)}, args.iters),
        f"batch {batch} x {positions // batch} tokens (token limit)":
            (batched(obs, [text_of_tokens(policy, positions // batch)] * batch), args.iters),
        f"1 prompt of {positions} tokens (token limit)": (
            {**obs, TASK_COLUMN: [text_of_tokens(policy, positions)]}, 1),
    }
    if args.skip_longest:
        cases = {name: case for name, case in cases.items() if not name.startswith("1 prompt")}
    report = {"device": f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} "
                        f"threads)", "torch": torch.__version__, "limits": vars(limits) | {
                            "max_prompt_tokens": positions}, "cases": {}}
    with InferenceServer(policy, port=0, poll_interval_ms=5, limits=limits) as server:
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        with InferenceClient("127.0.0.1", server.port, timeout_ms=600_000) as client:
            client.get_action(obs)  # warm-up
            for name, (observation, iters) in cases.items():
                report["cases"][name] = timed(client, observation, iters)
                print(f"{name:45s} {report['cases'][name]}", flush=True)
        server.stop()
        thread.join()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
