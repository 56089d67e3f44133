"""`groot rl`: PPO with flow-SDE noise for a GR00T policy in LIBERO.

One iteration: `rollout_epochs` episodes of every environment (`RolloutWorker`, environments in worker
processes, the policy batched on its device) -> GAE per episode, advantages normalized over the
iteration -> `Learner.update`: `update_epochs` passes of the clipped PPO objective and the clipped value
loss in mini-batches of `global_batch_size` transitions (gradient accumulated over micro-batches),
gradients clipped, AdamW with the critic's own learning rate. Every `eval_every` iterations one
deterministic (ODE) episode of every environment measures the success rate and records videos; every
`save_every` iterations `output_dir/checkpoint-<iteration>/` is written atomically (a servable policy +
`training_state/`: value head, optimizer, RNG, trainer state); a re-run resumes from the latest one
exactly, since every random draw of an iteration comes from generators seeded by (seed, iteration).
The learner and the rollout worker only share the actor module, so the learner could be wrapped for
DDP while environments stay in their processes.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from groot.errors import ConfigError
from groot.rl.actor import ActorCritic
from groot.rl.gae import advantage_moments, compute_gae, normalize_advantages
from groot.rl.ppo import PPOLossConfig, policy_loss, value_loss
from groot.rl.rollout import EpisodeBatch, RolloutWorker
from groot.train.distributed import DistributedContext, barrier, mean_across_ranks, sum_across_ranks
from groot.utils.seeding import hashed_seed

logger = logging.getLogger(__name__)
VALUE_HEAD_FILE = "value_head.safetensors"


@dataclasses.dataclass
class RolloutData:
    """The valid transitions of one iteration, flattened. M transitions."""

    samples: list[dict[str, Any]]
    chains: torch.Tensor  # [M, K + 1, 16, 32]
    stochastic: torch.Tensor  # [M, K] bool
    old_log_probs: torch.Tensor  # [M]
    old_values: torch.Tensor  # [M]
    advantages: torch.Tensor  # [M], normalized when asked
    returns: torch.Tensor  # [M]


def gather_rollouts(
    episodes: list[EpisodeBatch],
    gamma: float,
    lam: float,
    normalize: bool,
    ctx: DistributedContext | None = None,
) -> RolloutData:
    """GAE on each episode's [T, N] grid, then the valid transitions of all episodes in one batch.
    `normalize`: advantages normalized with the mean and std of every process's transitions (`ctx`), so
    N processes update as one process holding all their rollouts would."""
    parts: dict[str, list] = {"advantages": [], "returns": [], "old_log_probs": [], "old_values": []}
    for ep in episodes:
        advantages, returns = compute_gae(ep.rewards, ep.values, ep.dones, gamma, lam)
        parts["advantages"].append(advantages[ep.valid])
        parts["returns"].append(returns[ep.valid])
        parts["old_log_probs"].append(ep.log_probs[ep.valid])
        parts["old_values"].append(ep.values[ep.valid])
    flat = {key: torch.cat(value) for key, value in parts.items()}
    if normalize:
        valid = torch.ones_like(flat["advantages"], dtype=torch.bool)
        moments = advantage_moments(flat["advantages"], valid)
        if ctx is not None:
            moments = sum_across_ranks(moments, ctx)
        flat["advantages"] = normalize_advantages(flat["advantages"], valid, moments=moments)
    return RolloutData(
        samples=[s for ep in episodes for s in ep.samples],
        chains=torch.cat([ep.chains for ep in episodes]),
        stochastic=torch.cat([ep.stochastic for ep in episodes]),
        **flat,
    )


@dataclasses.dataclass(frozen=True)
class LearnerConfig:
    actor_lr: float
    value_lr: float
    update_epochs: int
    global_batch_size: int
    micro_batch_size: int
    loss: PPOLossConfig
    value_loss_coef: float = 1.0
    max_grad_norm: float = 1.0
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.95)
    eps: float = 1e-8


class Learner:
    """PPO updates of `actor` (its trainable model weights at `actor_lr`, its value head at `value_lr`).

    Under torchrun (`ctx.world_size` > 1) every process updates on its own rollouts and the gradients
    are summed across processes before clipping, each weighted by its share of the step's rows, so a step
    follows the mean over every process's rows as one process holding them all would (data
    parallelism; the weights stay equal on every rank). Every rank takes the same number of optimizer
    steps (the most any rank needs; a rank with fewer transitions starts its permutation again)."""

    def __init__(
        self,
        actor: ActorCritic,
        processor: Any,
        device: torch.device,
        cfg: LearnerConfig,
        autocast: bool = False,
        ctx: DistributedContext | None = None,
    ):
        self.actor, self.processor, self.device, self.cfg = actor, processor, device, cfg
        self.autocast = autocast
        self.ctx = ctx or DistributedContext(0, 1, 0, device)
        policy_params = [p for p in actor.model.parameters() if p.requires_grad]
        self.params = policy_params + list(actor.value_head.parameters())
        self.optimizer = torch.optim.AdamW(
            [
                {"params": policy_params, "lr": cfg.actor_lr},
                {"params": list(actor.value_head.parameters()), "lr": cfg.value_lr},
            ],
            betas=cfg.betas,
            eps=cfg.eps,
            weight_decay=cfg.weight_decay,
        )

    def update(self, data: RolloutData, seed: int, train_actor: bool = True) -> dict[str, float]:
        """`update_epochs` shuffled passes over `data` -> mean metrics of the optimizer steps.
        `train_actor` False: the critic alone learns (critic warm-up)."""
        cfg = self.cfg
        count = len(data.samples)
        generator = torch.Generator().manual_seed(seed)
        history: dict[str, list[float]] = {}
        steps = math.ceil(count / cfg.global_batch_size)
        if self.ctx.is_distributed:
            most = torch.tensor(steps, device=self.device)
            dist.all_reduce(most, op=dist.ReduceOp.MAX)
            steps = int(most)
        for _ in range(cfg.update_epochs):
            order = torch.randperm(count, generator=generator)
            for s in range(steps):
                start = (s * cfg.global_batch_size) % count
                step = self._optimizer_step(data, order[start : start + cfg.global_batch_size], train_actor)
                for key, value in step.items():
                    history.setdefault(key, []).append(value)
        return {key: float(np.mean(values)) for key, values in history.items()}

    def _optimizer_step(self, data: RolloutData, ids: torch.Tensor, train_actor: bool) -> dict[str, float]:
        self.optimizer.zero_grad(set_to_none=True)
        sums: dict[str, float] = {}
        rows = int(sum_across_ranks(torch.tensor(len(ids), device=self.device), self.ctx))  # all processes'
        for start in range(0, len(ids), self.cfg.micro_batch_size):
            micro = ids[start : start + self.cfg.micro_batch_size]
            weight = len(micro) / len(ids)  # of this process's metrics
            batch = self.processor([data.samples[i] for i in micro.tolist()]).to(self.device)
            with self._autocast():
                log_prob, value = self.actor.evaluate(batch, data.chains[micro], data.stochastic[micro])
            pg_loss, stats = policy_loss(
                log_prob,
                data.old_log_probs[micro].to(self.device),
                data.advantages[micro].to(self.device),
                self.cfg.loss,
            )
            v_loss = value_loss(
                value,
                data.old_values[micro].to(self.device),
                data.returns[micro].to(self.device),
                self.cfg.loss,
            )
            loss = (pg_loss if train_actor else 0.0 * pg_loss) + self.cfg.value_loss_coef * v_loss
            if not torch.isfinite(loss):
                raise FloatingPointError(
                    f"PPO loss is {float(loss)} (policy {float(pg_loss)}, value "
                    f"{float(v_loss)}); no update was applied"
                )
            (loss * (len(micro) / rows)).backward()  # summed over processes: the mean over every row
            for key, value in {"policy_loss": pg_loss, "value_loss": v_loss, **stats}.items():
                sums[key] = sums.get(key, 0.0) + float(value.detach()) * weight
        self._sum_gradients()
        grad_norm = torch.nn.utils.clip_grad_norm_(self.params, self.cfg.max_grad_norm)
        if not torch.isfinite(grad_norm):
            raise FloatingPointError(f"gradient norm is {float(grad_norm)}; no update was applied")
        self.optimizer.step()
        return {**sums, "grad_norm": float(grad_norm)}

    def _sum_gradients(self) -> None:
        """Gradients summed over the processes (each already weighted by its share of the step's rows);
        nothing to do in a single process."""
        if not self.ctx.is_distributed:
            return
        for param in self.params:
            if param.grad is None:
                param.grad = torch.zeros_like(param)
            dist.all_reduce(param.grad, op=dist.ReduceOp.SUM)

    def _autocast(self):
        import contextlib

        if self.autocast and self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()


@dataclasses.dataclass(frozen=True)
class RunSettings:
    """Everything the loop needs besides the objects (resolved from the CLI config and the recipe)."""

    output_dir: str
    iterations: int
    rollout_epochs: int
    noise_level: float
    noise_level_end: float | None
    noise_anneal_iterations: int
    gamma: float
    gae_lambda: float
    normalize_advantages: bool
    critic_warmup_iterations: int
    eval_every: int
    eval_videos: int
    save_every: int
    save_total_limit: int
    seed: int
    config: dict[str, Any]  # the resolved command config, saved with each checkpoint


def noise_level_at(settings: RunSettings, iteration: int) -> float:
    """Linear annealing from noise_level to noise_level_end over noise_anneal_iterations (if set)."""
    if settings.noise_level_end is None or settings.noise_anneal_iterations <= 0:
        return settings.noise_level
    fraction = min(1.0, iteration / settings.noise_anneal_iterations)
    return settings.noise_level + (settings.noise_level_end - settings.noise_level) * fraction


class MetricsLog:
    """metrics.jsonl in the output directory, the console, and TensorBoard when it is installed."""

    def __init__(self, output_dir: Path, tensorboard: bool):
        self.path = output_dir / "metrics.jsonl"
        self.writer = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                logger.warning(
                    "TensorBoard is not installed (pip install tensorboard): logging to "
                    "%s and the console only",
                    self.path,
                )
            else:
                self.writer = SummaryWriter(str(output_dir / "tensorboard"))

    def write(self, iteration: int, metrics: dict[str, float]) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps({"iteration": iteration, **metrics}) + "\n")
        shown = "  ".join(f"{k}={v:.4g}" for k, v in metrics.items())
        print(f"[rl] iteration {iteration}: {shown}", flush=True)
        if self.writer is not None:
            for key, value in metrics.items():
                self.writer.add_scalar(key, value, iteration)
            self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def train(
    policy: Any,
    actor: ActorCritic,
    worker: RolloutWorker,
    learner: Learner,
    settings: RunSettings,
    resume_from: Path | None = None,
    tensorboard: bool = True,
) -> dict[str, Any]:
    """The PPO loop (see the module docstring) -> {"iterations", "checkpoint", "last_metrics"}. Under
    torchrun each rank rolls out its own environments with its own seeds; metrics are means over the
    ranks, and rank 0 logs, records videos and writes checkpoints."""
    ctx = learner.ctx
    out = Path(settings.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    start = load_training_state(resume_from, actor, learner) if resume_from is not None else 0
    log = MetricsLog(out, tensorboard) if ctx.is_main else None
    metrics: dict[str, float] = {}
    checkpoint = resume_from
    try:
        for iteration in range(start, settings.iterations):
            started = time.perf_counter()
            actor.sampler = dataclasses.replace(
                actor.sampler, noise_level=noise_level_at(settings, iteration)
            )
            episodes = [
                worker.run(hashed_seed(settings.seed, iteration, epoch, 0, ctx.rank, bits=62))
                for epoch in range(settings.rollout_epochs)
            ]
            rollout_s = time.perf_counter() - started
            data = gather_rollouts(
                episodes, settings.gamma, settings.gae_lambda, settings.normalize_advantages, ctx
            )
            update = learner.update(
                data,
                hashed_seed(settings.seed, iteration, 0, 1, bits=62),
                train_actor=iteration >= settings.critic_warmup_iterations,
            )
            successes = [s for ep in episodes for s in ep.successes]
            metrics = {
                "success_rate": float(np.mean(successes)),
                "return": float(np.mean([float(ep.rewards.sum(0).mean()) for ep in episodes])),
                "episode_steps": float(np.mean([n for ep in episodes for n in ep.lengths])),
                "transitions": float(len(data.samples)),
                "noise_level": actor.sampler.noise_level,
                "value_mean": float(data.old_values.mean()),
                **update,
                "rollout_s": rollout_s,
                "iteration_s": time.perf_counter() - started,
            }
            done = iteration + 1
            if settings.eval_every > 0 and (done % settings.eval_every == 0 or done == settings.iterations):
                metrics.update(evaluate(worker, settings, done, out, ctx))
            metrics = {
                key: float(mean_across_ranks(torch.tensor(value, device=learner.device), ctx))
                for key, value in metrics.items()
            }
            # rollout episodes of every rank this iteration (the x axis of a learning curve)
            metrics["episodes"] = float(
                sum_across_ranks(torch.tensor(float(len(successes)), device=learner.device), ctx)
            )
            if log is not None:
                log.write(done, metrics)
            if settings.save_every > 0 and (done % settings.save_every == 0 or done == settings.iterations):
                if ctx.is_main:
                    checkpoint = save_checkpoint(out, done, policy, actor, learner, settings, metrics)
                barrier(ctx)
    finally:
        if log is not None:
            log.close()
    return {
        "iterations": settings.iterations,
        "checkpoint": str(checkpoint) if checkpoint else None,
        "last_metrics": metrics,
    }


def evaluate(
    worker: RolloutWorker, settings: RunSettings, iteration: int, out: Path, ctx: DistributedContext
) -> dict[str, float]:
    """One deterministic (ODE) episode of every environment; MP4s of the first `eval_videos` of them
    (rank 0)."""
    count = min(settings.eval_videos, worker.envs.num_envs) if ctx.is_main else 0
    record = frozenset(range(count))
    episode = worker.run(
        hashed_seed(settings.seed, iteration, 0, 2, ctx.rank, bits=62), deterministic=True, record=record
    )
    if record:
        from groot.data.video import encode_video
        from groot.sim.libero import CONTROL_FPS

        videos = out / "videos"
        videos.mkdir(parents=True, exist_ok=True)
        for i, frames in episode.frames.items():
            outcome = "success" if episode.successes[i] else "failure"
            encode_video(
                videos / f"iter{iteration:05d}_env{i:03d}_{outcome}.mp4", np.stack(frames), fps=CONTROL_FPS
            )
    return {
        "eval_success_rate": float(np.mean(episode.successes)),
        "eval_episode_steps": float(np.mean(episode.lengths)),
    }


# ---- checkpoints -----------------------------------------------------------------------------------
def save_checkpoint(
    out: Path,
    iteration: int,
    policy: Any,
    actor: ActorCritic,
    learner: Learner,
    settings: RunSettings,
    metrics: dict[str, float],
) -> Path:
    """`out/checkpoint-<iteration>/`: the servable policy (Policy.save_pretrained) + training_state/
    (value head, optimizer, RNG, trainer state), published by one rename; older ones rotated."""
    from safetensors.torch import save_file
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

    from groot.train import checkpointing as ckpt

    tmp = ckpt.begin_checkpoint(out, iteration)
    policy.save_pretrained(
        tmp,
        training={
            "rl": {
                "algorithm": "ppo-flow-sde",
                "iterations": iteration,
                **{k: settings.config[k] for k in ("suite", "tasks")},
            }
        },
        eval_results={k: v for k, v in metrics.items() if k.startswith("eval_")} or None,
    )
    state_dir = tmp / ckpt.STATE_DIR
    state_dir.mkdir(parents=True, exist_ok=True)
    save_file(
        {k: v.detach().cpu().contiguous() for k, v in actor.value_head.state_dict().items()},
        str(state_dir / VALUE_HEAD_FILE),
    )
    optimizer_state = get_optimizer_state_dict(
        actor, learner.optimizer, options=StateDictOptions(full_state_dict=True, cpu_offload=True)
    )
    ckpt.save_optimizer_state(optimizer_state, state_dir)
    ckpt.save_rng_state(state_dir, 0)
    ckpt.save_trainer_state(
        state_dir,
        {
            "iteration": iteration,
            "world_size": learner.ctx.world_size,
            "config": settings.config,
            "metrics": metrics,
        },
    )
    final = ckpt.commit_checkpoint(out, iteration)
    ckpt.clean_leftovers(out, settings.save_total_limit)
    return final


def load_training_state(checkpoint: Path, actor: ActorCritic, learner: Learner) -> int:
    """Value head, optimizer and RNG of `checkpoint` (its model weights are loaded with the policy)
    -> the iteration to continue from."""
    from safetensors.torch import load_file
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

    from groot.errors import CheckpointError
    from groot.train import checkpointing as ckpt

    state_dir = Path(checkpoint) / ckpt.STATE_DIR
    state = ckpt.load_trainer_state(checkpoint)
    if state.get("world_size", 1) != learner.ctx.world_size:
        raise CheckpointError(
            f"{checkpoint}: saved by {state.get('world_size', 1)} processes, resumed with "
            f"{learner.ctx.world_size}; exact resume needs the same number (--num-gpus)"
        )
    path = state_dir / VALUE_HEAD_FILE
    if not path.is_file():
        raise CheckpointError(f"{path}: missing (not a `groot rl` checkpoint)")
    actor.value_head.load_state_dict(load_file(str(path)))
    set_optimizer_state_dict(
        actor,
        learner.optimizer,
        ckpt.load_optimizer_state(state_dir),
        options=StateDictOptions(full_state_dict=True),
    )
    ckpt.load_rng_state(state_dir, 0)
    return int(state["iteration"])


def check_batch_sizes(global_batch_size: int, micro_batch_size: int) -> None:
    if global_batch_size < 1 or micro_batch_size < 1:
        raise ConfigError(
            f"--global-batch-size / --micro-batch-size: expected >= 1, found "
            f"{global_batch_size} / {micro_batch_size}"
        )


def max_policy_calls(max_episode_steps: int, executed_steps: int) -> int:
    return math.ceil(max_episode_steps / executed_steps)
