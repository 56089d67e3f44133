"""`groot rl`: PPO post-training of a GR00T checkpoint (N1.5 or N1.6) in LIBERO with flow-SDE noise."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Literal

from groot.errors import ConfigError
from groot.utils.cli_args import add_command, arg

FROM_RECIPE = "default: from --recipe"


@dataclasses.dataclass
class RLConfig:
    model_path: str = arg(
        help="fine-tuned checkpoint directory or hub id to start from (a groot / GR00T "
        "N1.5 or N1.6 checkpoint with its metadata and data config)"
    )
    embodiment_tag: str = arg("new_embodiment", "embodiment tag of the checkpoint's statistics")
    data_config: str | None = arg(
        None, "data config name; default: the checkpoint's own (libero_panda layout expected)"
    )
    output_dir: str = arg(
        "rl_out",
        "output: metrics.jsonl, checkpoint-<iteration>/, videos/, tensorboard/; "
        "a re-run resumes from its latest checkpoint (see --resume)",
    )
    recipe: Literal["auto", "n1.5-3b", "n1.6-3b", "small"] = arg(
        "auto",
        "default settings: n1.5-3b / n1.6-3b (the reference LIBERO-Spatial PPO "
        "recipes), small (tiny / small presets); auto: by the checkpoint's preset",
    )
    # environments
    suite: str = arg("libero_spatial", "LIBERO suite")
    tasks: list[int] = arg([0], "task ids; environment i runs tasks[i %% len(tasks)]")
    num_envs: int | None = arg(None, f"parallel environments ({FROM_RECIPE}: 64 / 8 / 16)")
    init_states: list[int] | None = arg(
        None,
        "fixed init state of each environment (one per environment; "
        "default: environment i starts from init state i // len(tasks))",
    )
    workers: int = arg(2, "environment worker processes (0: step the simulators in this process)")
    image_size: int = arg(128, "camera resolution: the one the policy was trained on")
    max_episode_steps: int | None = arg(None, f"environment steps per episode ({FROM_RECIPE}: 240)")
    # sampler
    executed_steps: int | None = arg(
        None,
        f"actions executed per policy call out of the predicted chunk ({FROM_RECIPE}: 5 for N1.5, "
        "16 for N1.6)",
    )
    denoising_steps: int | None = arg(None, f"flow-matching steps K ({FROM_RECIPE}: 4)")
    noise_level: float | None = arg(None, f"flow-SDE noise level a ({FROM_RECIPE}: 0.5)")
    noise_level_end: float | None = arg(
        None,
        "anneal the noise level linearly to this value over "
        "--noise-anneal-iterations (default: no annealing)",
    )
    noise_anneal_iterations: int = arg(0, "iterations of the noise annealing")
    joint_log_prob: bool = arg(
        False,
        "every denoising step stochastic; the chunk log-probability is the mean "
        "of the initial noise density and every transition's (default: one "
        "randomly chosen step per call)",
    )
    ignore_last: bool = arg(False, "never make the last denoising step stochastic")
    # PPO
    iterations: int = arg(100, "PPO iterations (rollout + update)")
    rollout_epochs: int | None = arg(
        None, f"episodes of every environment per iteration ({FROM_RECIPE}: 8 / 1 / 1)"
    )
    update_epochs: int | None = arg(
        None, f"passes over each iteration's transitions ({FROM_RECIPE}: 4 / 1 / 4)"
    )
    global_batch_size: int | None = arg(
        None, f"transitions per optimizer step ({FROM_RECIPE}: 1024 / 8 / 256)"
    )
    micro_batch_size: int | None = arg(
        None, f"transitions per forward/backward ({FROM_RECIPE}: 128 / 2 / 64)"
    )
    actor_lr: float | None = arg(None, f"policy learning rate ({FROM_RECIPE}: 5e-6, small 2.5e-5)")
    value_lr: float | None = arg(None, f"value head learning rate ({FROM_RECIPE}: 1e-4)")
    weight_decay: float = arg(0.01, "AdamW weight decay")
    adam_beta1: float = arg(0.9, "AdamW beta1")
    adam_beta2: float = arg(0.95, "AdamW beta2")
    adam_eps: float = arg(1e-8, "AdamW epsilon")
    max_grad_norm: float = arg(1.0, "gradient clipping norm (policy and value head together)")
    gamma: float = arg(0.99, "discount per policy call (chunk)")
    gae_lambda: float = arg(0.95, "GAE lambda")
    normalize_advantages: bool = arg(True, "normalize advantages over each iteration's transitions")
    clip_ratio_low: float = arg(0.2, "PPO clip: ratio >= 1 - this")
    clip_ratio_high: float = arg(0.2, "PPO clip: ratio <= 1 + this")
    dual_clip: float = arg(3.0, "dual clip c: for negative advantages the loss is at most c |A| (<= 1: off)")
    clip_log_ratio: float | None = arg(
        None, "clamp the log-ratio to +- this (0: off; default: from --recipe: off for N1.5, 20 for N1.6)"
    )
    value_clip: float = arg(0.2, "value clipping around the rollout's value")
    huber_delta: float = arg(10.0, "Huber delta of the value loss")
    value_loss_coef: float = arg(1.0, "weight of the value loss")
    critic_warmup_iterations: int = arg(0, "iterations in which only the value head learns")
    value_hidden: list[int] = arg([1024, 512, 256], "value head hidden widths")
    # what trains
    tune_llm: bool = arg(False, "train the LLM")
    tune_visual: bool = arg(False, "train the vision tower")
    tune_projector: bool = arg(True, "train the action head's state / action encoders and decoder")
    tune_diffusion_model: bool = arg(True, "train the DiT")
    # evaluation, logging, checkpoints
    eval_every: int = arg(
        10, "deterministic (ODE) evaluation episode every N iterations and at the end (0: never)"
    )
    eval_videos: int = arg(2, "MP4s (agent | wrist view) of the first N environments at each evaluation")
    save_every: int = arg(10, "checkpoint every N iterations and at the end (0: never)")
    save_total_limit: int = arg(3, "checkpoints kept (0: all)")
    resume: bool = arg(True, "continue from the latest checkpoint in --output-dir when there is one")
    tensorboard: bool = arg(True, "also log to TensorBoard when it is installed")
    device: str | None = arg(None, "torch device of the policy and learner (default: cuda if available)")
    bf16: bool = arg(True, "bf16 autocast on CUDA (the weights and optimizer stay float32)")
    seed: int = arg(0, "seed of every random draw (per iteration: exact resume)")
    num_gpus: int = arg(
        1,
        "learner processes: N > 1 relaunches under torchrun; each process runs --num-envs environments of "
        "its own (global indices rank * num_envs ...); advantages and gradients are combined over every "
        "process's transitions (data parallel: the update of one process holding all rollouts)",
    )


def resolve(cfg: RLConfig, preset: str, action_horizon: int = 16) -> dict[str, Any]:
    """The config with every recipe-backed None filled in -> a plain dict (saved in checkpoints).
    `action_horizon`: the model's chunk length, the most steps a call can execute."""
    from groot.rl.recipes import recipe_for

    name, recipe = recipe_for(preset, cfg.recipe)
    values = dataclasses.asdict(cfg)
    for key, default in recipe.items():
        if values.get(key) is None:
            values[key] = default
    values["recipe"] = name
    if values["clip_log_ratio"] == 0:
        values["clip_log_ratio"] = None
    for key in (
        "num_envs",
        "rollout_epochs",
        "update_epochs",
        "executed_steps",
        "denoising_steps",
        "max_episode_steps",
        "iterations",
    ):
        if values[key] < 1:
            raise ConfigError(f"--{key.replace('_', '-')}: expected >= 1, found {values[key]}")
    if not 1 <= values["executed_steps"] <= action_horizon:
        raise ConfigError(
            f"--executed-steps: expected 1..{action_horizon} (the model's action horizon), found "
            f"{values['executed_steps']}"
        )
    if not values["noise_level"] > 0:
        raise ConfigError(
            f"--noise-level: PPO needs a stochastic policy, expected > 0, found {values['noise_level']}"
        )
    if not cfg.tasks:
        raise ConfigError("--tasks: expected at least one task id")
    return values


def run_rl(cfg: RLConfig) -> int:
    result = run(cfg)
    print(f"groot rl: {result['iterations']} iterations; last checkpoint: {result['checkpoint']}")
    return 0


def run(cfg: RLConfig) -> dict[str, Any]:
    """Build the learner side (`build`), the environments and the rollout worker, then train."""
    from groot.sim.libero import libero_available
    from groot.train.checkpointing import clean_leftovers, latest_checkpoint
    from groot.train.distributed import (
        barrier,
        config_to_argv,
        init_distributed,
        launched_by_torchrun,
        relaunch_under_torchrun,
        shutdown,
    )

    if not libero_available():
        raise ConfigError("groot rl needs the LIBERO simulator: pip install 'groot[sim]'")
    if cfg.num_gpus > 1 and not launched_by_torchrun():
        relaunch_under_torchrun(cfg.num_gpus, ["rl", *config_to_argv(cfg)])
        return {"iterations": cfg.iterations, "checkpoint": None, "last_metrics": {}}
    ctx = init_distributed(use_cuda=None if cfg.device is None else cfg.device.startswith("cuda"))
    try:
        out = Path(cfg.output_dir)
        if ctx.is_main:
            clean_leftovers(out, cfg.save_total_limit)
        barrier(ctx)
        resume_from = latest_checkpoint(out) if cfg.resume else None
        return _run_rank(cfg, ctx, resume_from)
    finally:
        shutdown(ctx)


def _run_rank(cfg: RLConfig, ctx: Any, resume_from: Path | None) -> dict[str, Any]:
    """One process's part: its environments (global indices rank * num_envs ...), rollouts and updates."""
    from groot.rl.envs import VectorLibero, env_specs
    from groot.rl.rollout import RolloutWorker
    from groot.rl.trainer import max_policy_calls, train

    built = build(cfg, resume_from, ctx)
    values = built.settings.config
    specs = env_specs(
        cfg.suite,
        list(cfg.tasks),
        values["num_envs"],
        cfg.init_states,
        cfg.image_size,
        cfg.seed,
        values["max_episode_steps"],
        first_index=ctx.rank * values["num_envs"],
    )
    print(
        f"groot rl: recipe {values['recipe']}, {values['num_envs']} envs in {cfg.workers} worker(s), "
        f"{values['executed_steps']}/16 steps executed, noise level {values['noise_level']}, device "
        f"{built.policy.device}" + (f", resuming from {resume_from}" if resume_from else ""),
        flush=True,
    )
    with VectorLibero(specs, cfg.workers) as envs:
        worker = RolloutWorker(
            envs,
            built.policy,
            built.actor,
            values["executed_steps"],
            max_policy_calls(values["max_episode_steps"], values["executed_steps"]),
            autocast=cfg.bf16,
        )
        return train(
            built.policy, built.actor, worker, built.learner, built.settings, resume_from, cfg.tensorboard
        )


@dataclasses.dataclass
class Built:
    policy: Any  # groot.policy.Policy (eager, float32 weights)
    actor: Any  # groot.rl.actor.ActorCritic
    learner: Any  # groot.rl.trainer.Learner
    settings: Any  # groot.rl.trainer.RunSettings; .config: the resolved settings


def build(cfg: RLConfig, resume_from: Path | None = None, ctx: Any = None) -> Built:
    """Policy (from `resume_from` when given, else --model-path), actor-critic, learner and loop settings.
    `ctx`: this process's `groot.train.distributed.DistributedContext` (None: a single process)."""
    import torch

    from groot.policy import Policy
    from groot.rl.actor import ActorCritic, SamplerConfig
    from groot.rl.ppo import PPOLossConfig
    from groot.rl.trainer import Learner, LearnerConfig, RunSettings, check_batch_sizes

    if ctx is not None and ctx.is_distributed:
        device = ctx.device
    else:
        device = torch.device(cfg.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    policy = Policy.from_pretrained(
        resume_from or cfg.model_path,
        cfg.embodiment_tag,
        data_config=cfg.data_config,
        device=device,
        fast=False,
        dtype=torch.float32,
    )
    values = resolve(cfg, policy.model.config.preset, policy.model.config.action_head_cfg.action_horizon)
    check_batch_sizes(values["global_batch_size"], values["micro_batch_size"])
    policy.denoising_steps = values["denoising_steps"]
    policy.model.set_trainable(cfg.tune_llm, cfg.tune_visual, cfg.tune_projector, cfg.tune_diffusion_model)
    sampler = SamplerConfig(
        noise_level=values["noise_level"],
        num_steps=values["denoising_steps"],
        executed_steps=values["executed_steps"],
        action_dim=policy.action_dim,
        joint_log_prob=cfg.joint_log_prob,
        ignore_last=cfg.ignore_last,
    )
    torch.manual_seed(cfg.seed)  # the value head's initial weights
    actor = ActorCritic(policy.model, sampler, tuple(cfg.value_hidden)).to(device)
    loss = PPOLossConfig(
        cfg.clip_ratio_low,
        cfg.clip_ratio_high,
        cfg.dual_clip,
        values["clip_log_ratio"],
        cfg.value_clip,
        cfg.huber_delta,
    )
    learner = Learner(
        actor,
        policy.processor,
        device,
        LearnerConfig(
            values["actor_lr"],
            values["value_lr"],
            values["update_epochs"],
            values["global_batch_size"],
            values["micro_batch_size"],
            loss,
            cfg.value_loss_coef,
            cfg.max_grad_norm,
            cfg.weight_decay,
            (cfg.adam_beta1, cfg.adam_beta2),
            cfg.adam_eps,
        ),
        autocast=cfg.bf16,
        ctx=ctx,
    )
    settings = RunSettings(
        cfg.output_dir,
        cfg.iterations,
        values["rollout_epochs"],
        values["noise_level"],
        cfg.noise_level_end,
        cfg.noise_anneal_iterations,
        cfg.gamma,
        cfg.gae_lambda,
        cfg.normalize_advantages,
        cfg.critic_warmup_iterations,
        cfg.eval_every,
        cfg.eval_videos,
        cfg.save_every,
        cfg.save_total_limit,
        cfg.seed,
        values,
    )
    return Built(policy, actor, learner, settings)


def register(subparsers) -> None:
    add_command(
        subparsers,
        "rl",
        RLConfig,
        run_rl,
        "PPO post-training with flow-SDE noise of a GR00T checkpoint in LIBERO (needs the `sim` extra)",
    )
