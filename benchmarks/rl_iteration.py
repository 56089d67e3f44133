"""One `groot rl` PPO iteration at a preset's scale on one device: time per phase and peak memory.

    python benchmarks/rl_iteration.py --preset tiny --device cpu --num-envs 4 --iterations 1   # CPU check
    python benchmarks/rl_iteration.py --preset n1.5-3b --rollout-epochs 1 --update-epochs 1 --iterations 2

What runs is `groot rl`'s own code: `commands.build` (Policy with float32 weights, ActorCritic with its
value head, Learner with AdamW, the recipe resolved from the checkpoint's preset), a `RolloutWorker` and
`trainer.train` with evaluation and checkpoints off. Only the environments differ: `SyntheticLibero`
(`groot.rl.synthetic`, no simulator) in this process, whose episodes never succeed, so every episode
runs --max-episode-steps and each rollout epoch yields num_envs x ceil(max_episode_steps /
executed_steps) transitions, the most the recipe can produce. The checkpoint is built first with random
weights (bf16 on disk, as released checkpoints are) and the `libero_panda` data config fitted to the
model as `groot finetune` stores it; the prompt uses the built-in byte tokenizer (no hub access), whose
instruction "pick up black bowl" is as many tokens as a LIBERO-Spatial instruction is with Qwen3 (the
template's text costs a few more byte tokens than Qwen3 tokens).

Settings are the recipe's for the preset (`groot.rl.recipes`: n1.5-3b 64 envs, 240 steps, 5 executed
steps, 8 rollout epochs, 4 update epochs, batch 1024 / micro 128; n1.6-3b 8 envs, 16 executed, batch 8
/ micro 2; tiny / small 16 envs, batch 256 / micro 64) unless a flag overrides them. Per iteration:
- rollout: seconds, split into model (`ActorCritic.act`, synchronized), env (stepping) and host (the
  rest: observation transforms, processor, uploads, action decoding); policy calls, first call;
- update: seconds, optimizer steps, micro-batches (forward + backward), rows per second;
- peak GPU memory per phase (`torch.cuda.max_memory_allocated` / `max_memory_reserved`, reset before
  each phase) and the process's peak host RSS;
plus parameter counts and sizes of the policy (held in float32; what bf16 would take) and of the
trainable parts (the recipe's tuning: projector + DiT, and the value head) with their gradients and
AdamW moments, whether the update changed the weights, the loop's own metrics (losses, KL, ...) and,
when --rollout-epochs / --update-epochs differ from the recipe's, the iteration time the recipe's epochs
would take (rollout scaled by the rollout epochs, update by rollout x update epochs). JSON goes to
benchmarks/results/rl_iteration_<preset>_<device>.json (or --out); a table is printed last.

On one GPU use (an H200: a few minutes in all, checkpoint included)
    python benchmarks/rl_iteration.py --preset n1.5-3b --rollout-epochs 1 --update-epochs 1 --iterations 2
    python benchmarks/rl_iteration.py --preset n1.6-3b --iterations 2
The first keeps the N1.5 recipe's 64 environments x 240 steps (48 policy calls of 64 rows, 3072
transitions per rollout epoch) and its batch 1024 / micro 128, but one rollout epoch of the recipe's 8
and one update epoch of its 4 (the estimate scales the last iteration up); the second iteration shows
the warm state. Peak GPU memory does not depend on the epochs; host memory grows with the rollout
epochs (every transition's model sample stays on the host until the update). For a 24-48 GB GPU lower
--micro-batch-size (the update's activations) and --num-envs (the rollout's batch); neither shrinks the
float32 weights nor the trained parts' gradients and AdamW moments (`parameters` in the JSON).

Scaling out: `groot rl --num-gpus N` runs N copies of this whole iteration under torchrun; every rank is
both a rollout worker and a learner (no split of the roles across GPUs), with its own --num-envs
environments, rollouts and transitions; advantages are normalized with every rank's statistics and the
gradients summed with each rank weighted by its share of the rows (data parallel, so an optimizer step
covers N x --global-batch-size transitions as one process holding them all would). Rollout throughput
and transitions per iteration grow N-fold; the per-GPU memory and per-step time measured here stay as
they are (every rank holds the whole policy and its optimizer). The simulators run in `--workers` CPU
processes per rank; here the synthetic environments step in this process and cost next to nothing, so
`env` time is a floor, not LIBERO's.
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import resource
import shlex
import sys
import tempfile
import time
from pathlib import Path

import torch

from groot.data.configs import libero_panda
from groot.model.config import preset_config
from groot.model.gr00t_n16 import model_class
from groot.model.tokenizer import ByteTokenizer
from groot.rl.commands import RLConfig, build
from groot.rl.recipes import RECIPES
from groot.rl.rollout import RolloutWorker
from groot.rl.synthetic import SyntheticLibero, synthetic_libero_metadata
from groot.rl.trainer import max_policy_calls, train
from groot.train.data import fit_data_config_to_model

PRESETS = ("n1.5-3b", "n1.6-3b", "small", "tiny", "n1.6-small", "n1.6-tiny")
INSTRUCTION = "pick up black bowl"  # 18 bytes: the Qwen3 tokens of a LIBERO-Spatial instruction
GIB = 2**30
ADAMW_BYTES_PER_PARAM = 16  # float32 weight, gradient, two moments
WATCHED_POLICY_WEIGHT = "model.action_head.action_decoder.layer2.W"


# ---- the checkpoint ---------------------------------------------------------------------------------
def make_checkpoint(preset: str, root: Path, camera: int, device: torch.device) -> Path:
    """A random-weight checkpoint of `preset` (built on `device`, saved in bf16) with the byte tokenizer,
    the `libero_panda` data config fitted to the model and synthetic statistics for `camera` frames."""
    config = preset_config(preset)
    config.backbone_cfg.tokenizer = "bytes"
    config.backbone_cfg.image_token_id = ByteTokenizer().image_token_id
    torch.manual_seed(0)
    with torch.device(device):
        model = model_class(config)(config)
    model = model.to(torch.bfloat16)
    data_config = fit_data_config_to_model(libero_panda(), model.config)
    metadata = {"new_embodiment": synthetic_libero_metadata(camera)}
    path = model.save_pretrained(root / preset, metadata=metadata, data_config=data_config)
    del model
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return path


# ---- instruments ------------------------------------------------------------------------------------
def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Meter:
    """Phase records of each iteration: a rollout phase starts at the first rollout after an update (peak
    memory statistics reset), the update phase is `Learner.update` (reset again before it)."""

    def __init__(self, device: torch.device):
        self.device = device
        self.iterations: list[dict] = []
        self.current: dict | None = None
        self.optimizer_steps = 0  # counted by an optimizer hook
        self.value_head_calls = 0  # one per act / evaluate: the update's count is its micro-batches
        self.value_head_rows = 0
        self.update_start = (0, 0, 0, 0.0)  # steps, value head calls and rows, clock at the update's start

    def count_optimizer_step(self) -> None:
        self.optimizer_steps += 1

    def count_value_head(self, values: torch.Tensor) -> None:
        self.value_head_calls += 1
        self.value_head_rows += values.shape[0]

    def _reset_peak(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)

    def _peak(self) -> dict[str, float | None]:
        if self.device.type != "cuda":
            return {"peak_allocated_gib": None, "peak_reserved_gib": None}
        return {
            "peak_allocated_gib": torch.cuda.max_memory_allocated(self.device) / GIB,
            "peak_reserved_gib": torch.cuda.max_memory_reserved(self.device) / GIB,
        }

    def rollout(self) -> dict:
        """The record of the rollout phase in progress (started here after an update)."""
        if self.current is None:
            self._reset_peak()
            zero = {"seconds": 0.0, "model_s": 0.0, "env_s": 0.0, "policy_calls": 0, "env_steps": 0}
            self.current = {"rollout": {**zero, "first_call_s": None}}
        return self.current["rollout"]

    def start_update(self) -> None:
        rollout = self.rollout()
        rollout["host_s"] = rollout["seconds"] - rollout["model_s"] - rollout["env_s"]
        rollout.update(self._peak())
        self._reset_peak()
        self.update_start = (
            self.optimizer_steps,
            self.value_head_calls,
            self.value_head_rows,
            time.perf_counter(),
        )

    def end_update(self, transitions: int) -> None:
        steps, calls, rows, start = self.update_start
        sync(self.device)
        seconds = time.perf_counter() - start
        rollout = self.rollout()
        rollout["transitions"] = transitions
        rollout["transitions_per_s"] = transitions / rollout["seconds"]
        micro_batches = self.value_head_calls - calls
        update = {
            "seconds": seconds,
            "optimizer_steps": self.optimizer_steps - steps,
            "micro_batches": micro_batches,
            "seconds_per_micro_batch": seconds / max(micro_batches, 1),
            "rows_per_s": (self.value_head_rows - rows) / seconds,
            **self._peak(),
        }
        self.iterations.append({"rollout": rollout, "update": update})
        self.current = None


class TimedEnvs:
    """The environments with their stepping time and steps counted (`RolloutWorker`'s env surface)."""

    def __init__(self, envs: SyntheticLibero, meter: Meter):
        self.envs, self.meter, self.num_envs = envs, meter, envs.num_envs

    def reset(self):
        start = time.perf_counter()
        obs = self.envs.reset()
        self.meter.rollout()["env_s"] += time.perf_counter() - start
        return obs

    def step(self, chunks, record=frozenset()):
        start = time.perf_counter()
        results = self.envs.step(chunks, record)
        phase = self.meter.rollout()
        phase["env_s"] += time.perf_counter() - start
        phase["env_steps"] += sum(len(actions) for actions in chunks.values())
        return results


class TimedActor:
    """`ActorCritic.act` timed to its completion on the device (what `RolloutWorker` calls)."""

    def __init__(self, actor, meter: Meter, device: torch.device):
        self.actor, self.meter, self.device = actor, meter, device
        self.prompt_tokens: int | None = None
        self.images_per_sample: int | None = None

    def act(self, batch, **kwargs):
        start = time.perf_counter()
        out = self.actor.act(batch, **kwargs)
        sync(self.device)
        seconds = time.perf_counter() - start
        phase = self.meter.rollout()
        phase["model_s"] += seconds
        phase["policy_calls"] += 1
        if phase["first_call_s"] is None:
            phase["first_call_s"] = seconds
        self.prompt_tokens = int(batch.input_ids.shape[1])
        self.images_per_sample = int(batch.pixel_values.shape[0]) // int(batch.input_ids.shape[0])
        return out


class TimedWorker:
    """The rollout worker with its episodes timed (`train` calls `run`)."""

    def __init__(self, worker: RolloutWorker, meter: Meter):
        self.worker, self.meter = worker, meter

    def run(self, seed, **kwargs):
        phase = self.meter.rollout()
        start = time.perf_counter()
        episode = self.worker.run(seed, **kwargs)
        phase["seconds"] += time.perf_counter() - start
        return episode


class TimedLearner:
    """The learner with its update timed; everything else is the learner's own."""

    def __init__(self, learner, meter: Meter):
        self.learner, self.meter = learner, meter

    def update(self, data, seed, train_actor=True):
        self.meter.start_update()
        metrics = self.learner.update(data, seed, train_actor=train_actor)
        self.meter.end_update(len(data.samples))
        return metrics

    def __getattr__(self, name):
        return getattr(self.learner, name)


# ---- accounting -------------------------------------------------------------------------------------
def parameter_report(actor) -> dict:
    """Counts and sizes of the policy's weights and of what trains (grouped by module prefix)."""
    model_params = list(actor.model.named_parameters())
    count = sum(p.numel() for _, p in model_params)
    held = sum(p.numel() * p.element_size() for _, p in model_params)
    trainable = [(name, p) for name, p in model_params if p.requires_grad]
    groups: dict[str, int] = {}
    for name, p in trainable:
        prefix = ".".join(name.split(".")[:2])
        groups[prefix] = groups.get(prefix, 0) + p.numel()
    trained = sum(p.numel() for _, p in trainable)
    value_head = sum(p.numel() for p in actor.value_head.parameters())
    return {
        "policy": {
            "count": count,
            "held_dtype": str(model_params[0][1].dtype).removeprefix("torch."),
            "held_gib": held / GIB,
            "bf16_gib": count * 2 / GIB,
        },
        "trainable": {
            "count": trained,
            "by_module": groups,
            "fp32_weights_gib": trained * 4 / GIB,
            "with_grads_and_adamw_gib": trained * ADAMW_BYTES_PER_PARAM / GIB,
        },
        "value_head": {
            "count": value_head,
            "with_grads_and_adamw_gib": value_head * ADAMW_BYTES_PER_PARAM / GIB,
        },
    }


def watched_weights(actor) -> dict[str, tuple[str, torch.Tensor]]:
    """Host copies of the action decoder's output weight (trained under the recipe's tuning) and of the
    value head's output layer weight."""
    params = dict(actor.named_parameters())
    head_weights = [name for name, _ in actor.value_head.named_parameters() if name.endswith("weight")]
    head_name = f"value_head.{head_weights[-1]}"
    return {
        part: (name, params[name].detach().float().cpu().clone())
        for part, name in (("policy", WATCHED_POLICY_WEIGHT), ("value_head", head_name))
    }


def weight_changes(actor, before: dict[str, tuple[str, torch.Tensor]]) -> dict[str, dict]:
    """Per watched weight: the largest absolute change since `before`."""
    params = dict(actor.named_parameters())
    out = {}
    for part, (name, value) in before.items():
        delta = (params[name].detach().float().cpu() - value).abs().max().item()
        out[part] = {"weight": name, "max_abs_change": delta, "changed": delta > 0}
    return out


def recipe_epoch_estimate(iteration: dict, settings: dict, recipe: dict) -> dict | None:
    """The iteration time at the recipe's rollout / update epochs, scaled from this measured iteration
    (None when this run used them)."""
    rollout_scale = recipe["rollout_epochs"] / settings["rollout_epochs"]
    update_scale = rollout_scale * recipe["update_epochs"] / settings["update_epochs"]
    if rollout_scale == 1 and update_scale == 1:
        return None
    return {
        "rollout_epochs": recipe["rollout_epochs"],
        "update_epochs": recipe["update_epochs"],
        "rollout_s": iteration["rollout"]["seconds"] * rollout_scale,
        "update_s": iteration["update"]["seconds"] * update_scale,
        "iteration_s": iteration["rollout"]["seconds"] * rollout_scale
        + iteration["update"]["seconds"] * update_scale,
    }


# ---- the run ----------------------------------------------------------------------------------------
def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu-{platform.machine()}"


def device_slug(name: str) -> str:
    """'NVIDIA H200' -> 'h200'; 'cpu-x86_64' -> 'cpu'."""
    if name.startswith("cpu"):
        return "cpu"
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_").removeprefix("nvidia_")


def rl_config(args: argparse.Namespace, checkpoint: Path, output_dir: Path) -> RLConfig:
    """`groot rl`'s config: the recipe's values except where a flag is given; no evaluation or saving."""
    overrides = {
        key: getattr(args, key)
        for key in (
            "num_envs",
            "max_episode_steps",
            "rollout_epochs",
            "update_epochs",
            "global_batch_size",
            "micro_batch_size",
        )
        if getattr(args, key) is not None
    }
    return RLConfig(
        model_path=str(checkpoint),
        output_dir=str(output_dir),
        iterations=args.iterations,
        image_size=args.camera,
        workers=0,
        eval_every=0,
        save_every=0,
        tensorboard=False,
        device=str(args.device),
        **overrides,
    )


def run(args: argparse.Namespace, work_dir: Path, command: str) -> dict:
    device = torch.device(args.device)
    started = time.perf_counter()
    checkpoint = make_checkpoint(args.preset, work_dir, args.camera, device)
    checkpoint_s = time.perf_counter() - started
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    started = time.perf_counter()
    cfg = rl_config(args, checkpoint, work_dir / "rl")
    built = build(cfg)
    sync(device)
    build_s = time.perf_counter() - started
    settings = built.settings.config
    after_build = torch.cuda.memory_allocated(device) / GIB if device.type == "cuda" else None

    meter = Meter(device)
    built.learner.optimizer.register_step_post_hook(lambda *_: meter.count_optimizer_step())
    built.actor.value_head.register_forward_hook(
        lambda module, inputs, output: meter.count_value_head(output)
    )
    envs = SyntheticLibero(
        settings["num_envs"],
        settings["max_episode_steps"],
        goal=None,
        camera=args.camera,
        instruction=INSTRUCTION,
    )
    actor = TimedActor(built.actor, meter, device)
    worker = RolloutWorker(
        TimedEnvs(envs, meter),
        built.policy,
        actor,
        settings["executed_steps"],
        max_policy_calls(settings["max_episode_steps"], settings["executed_steps"]),
        autocast=cfg.bf16,
    )
    before = watched_weights(built.actor)
    train(
        built.policy,
        built.actor,
        TimedWorker(worker, meter),
        TimedLearner(built.learner, meter),
        built.settings,
        None,
        tensorboard=False,
    )
    loop_metrics = [json.loads(line) for line in (work_dir / "rl" / "metrics.jsonl").read_text().splitlines()]
    iterations = [
        {**phases, "loop": metrics} for phases, metrics in zip(meter.iterations, loop_metrics, strict=True)
    ]
    return {
        "command": command,
        "preset": args.preset,
        "device": device_name(device),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "cuda": torch.version.cuda,
        "settings": {**settings, "bf16_autocast": cfg.bf16 and device.type == "cuda"},
        "prompt_tokens": actor.prompt_tokens,
        "images_per_sample": actor.images_per_sample,
        "camera": args.camera,
        "parameters": parameter_report(built.actor),
        "setup": {"checkpoint_s": checkpoint_s, "build_s": build_s, "allocated_after_build_gib": after_build},
        "iterations": iterations,
        "recipe_epochs_estimate": recipe_epoch_estimate(
            iterations[-1], settings, RECIPES[settings["recipe"]]
        ),
        "weights": weight_changes(built.actor, before),
        "host_peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / GIB,
    }


def _gib(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _count(n: int) -> str:
    return f"{n / 1e9:.2f} B" if n >= 1e9 else f"{n / 1e6:.1f} M"


def print_table(result: dict) -> None:
    s, policy, trained = result["settings"], result["parameters"]["policy"], result["parameters"]["trainable"]
    setup, estimate, weights = result["setup"], result["recipe_epochs_estimate"], result["weights"]
    print(
        f"\n{result['preset']} on {result['device']}: {s['num_envs']} envs x {s['max_episode_steps']} "
        f"steps, {s['executed_steps']} executed, {s['rollout_epochs']} rollout / {s['update_epochs']} "
        f"update epochs, batch {s['global_batch_size']} / micro {s['micro_batch_size']}, prompt "
        f"{result['prompt_tokens']} tokens"
    )
    print(
        f"policy {_count(policy['count'])} params ({policy['held_dtype']} {policy['held_gib']:.1f} GiB, "
        f"bf16 {policy['bf16_gib']:.1f} GiB); trainable {_count(trained['count'])} (with grads and "
        f"AdamW {trained['with_grads_and_adamw_gib']:.1f} GiB); setup {setup['checkpoint_s']:.0f} s "
        f"checkpoint + {setup['build_s']:.0f} s build"
    )
    print(
        f"{'iter':>4} {'trans':>6} {'rollout s':>9} {'model':>7} {'env':>6} {'host':>7} {'calls':>5} "
        f"{'update s':>8} {'steps':>5} {'micro':>5} {'GiB roll':>8} {'GiB upd':>7} {'reserved':>8}"
    )
    for i, it in enumerate(result["iterations"], 1):
        r, u = it["rollout"], it["update"]
        reserved = (
            None if r["peak_reserved_gib"] is None else max(r["peak_reserved_gib"], u["peak_reserved_gib"])
        )
        print(
            f"{i:>4} {r['transitions']:>6} {r['seconds']:>9.1f} {r['model_s']:>7.1f} {r['env_s']:>6.1f} "
            f"{r['host_s']:>7.1f} {r['policy_calls']:>5} {u['seconds']:>8.1f} {u['optimizer_steps']:>5} "
            f"{u['micro_batches']:>5} {_gib(r['peak_allocated_gib']):>8} {_gib(u['peak_allocated_gib']):>7} "
            f"{_gib(reserved):>8}"
        )
    if estimate:
        print(
            f"at the recipe's {estimate['rollout_epochs']} rollout / {estimate['update_epochs']} update "
            f"epochs: ~{estimate['iteration_s']:.0f} s per iteration (scaled from the last one)"
        )
    print(
        f"weights changed: policy {weights['policy']['changed']}, value head "
        f"{weights['value_head']['changed']}; host peak RSS {result['host_peak_rss_gib']:.1f} GiB"
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--preset", default="n1.5-3b", choices=PRESETS, help="model preset (random weights)")
    parser.add_argument(
        "--device",
        default="cuda" if torch.cuda.is_available() else "cpu",
        help="torch device of the policy and learner",
    )
    parser.add_argument("--iterations", type=int, default=1, help="PPO iterations (rollout + update)")
    recipe = "default: the preset's recipe"
    parser.add_argument("--num-envs", type=int, default=None, help=f"environments ({recipe})")
    parser.add_argument("--max-episode-steps", type=int, default=None, help=f"steps per episode ({recipe})")
    parser.add_argument("--rollout-epochs", type=int, default=None, help=f"episodes per iteration ({recipe})")
    parser.add_argument(
        "--update-epochs", type=int, default=None, help=f"passes over the transitions ({recipe})"
    )
    parser.add_argument(
        "--global-batch-size", type=int, default=None, help=f"transitions per step ({recipe})"
    )
    parser.add_argument(
        "--micro-batch-size", type=int, default=None, help=f"transitions per forward/backward ({recipe})"
    )
    parser.add_argument(
        "--camera", type=int, default=128, help="square camera resolution (groot rl's default)"
    )
    parser.add_argument(
        "--work-dir",
        type=Path,
        default=None,
        help="keep the checkpoint and the loop's metrics.jsonl here (default: a temporary one)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="JSON path (default benchmarks/results/rl_iteration_<preset>_<device>.json)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    command = shlex.join(["python", "benchmarks/rl_iteration.py", *argv])
    if args.work_dir is not None:
        args.work_dir.mkdir(parents=True, exist_ok=True)
        result = run(args, args.work_dir, command)
    else:
        with tempfile.TemporaryDirectory(prefix="groot-rl-bench-") as tmp:
            result = run(args, Path(tmp), command)
    name = f"rl_iteration_{args.preset}_{device_slug(result['device'])}.json"
    out = args.out or Path(__file__).parent / "results" / name
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    print_table(result)
    print(f"wrote {out}")
    return result


if __name__ == "__main__":
    main()
