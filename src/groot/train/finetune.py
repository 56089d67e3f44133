"""`groot finetune`: fine-tune GR00T N1.5 or N1.6 on LeRobot datasets (the official recipe, spec 10).

`finetune(FinetuneConfig) -> Path` trains and returns the final checkpoint directory. Flags and
defaults are those of the official `scripts/gr00t_finetune.py`, plus groot extras (seed, gradient
accumulation, clipping, held-out loss, checkpoint rotation). Per logged step one JSON line goes to
`output_dir/metrics.jsonl`: step, loss, lr, grad_norm, samples_per_s, epoch.
"""

from __future__ import annotations

import dataclasses
import os
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from groot.errors import ConfigError
from groot.train.finetune_config import FinetuneConfig, validate
from groot.train.nonfinite import NonFiniteWatch
from groot.train.plan import TrainPlan
from groot.train.step import MicroBatch

__all__ = ["FinetuneConfig", "finetune"]

LORA_ADAPTER_DIR = "lora_adapter"


def finetune(cfg: FinetuneConfig) -> Path:
    """Train; returns the final checkpoint directory (`output_dir/checkpoint-<max_steps>`)."""
    from groot.data.configs import get_data_config
    from groot.data.embodiment import embodiment_index
    from groot.train.checkpointing import checkpoint_dir
    from groot.train.distributed import (
        config_to_argv,
        init_distributed,
        launched_by_torchrun,
        relaunch_under_torchrun,
        shutdown,
    )
    from groot.train.plan import resolve_plan
    from groot.train.prepare import training_settings

    validate(cfg)
    if cfg.data_config is None:
        cfg = dataclasses.replace(cfg, data_config=inferred_data_config(cfg.dataset_path[0]))
    get_data_config(cfg.data_config)  # an unknown name fails now, before a model is loaded
    visible = torch.cuda.device_count()
    if 0 < visible < cfg.num_gpus:
        raise ConfigError(f"--num-gpus {cfg.num_gpus}: only {visible} CUDA device(s) visible "
                         f"(CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', 'unset')})")
    if cfg.num_gpus > 1 and not launched_by_torchrun():
        relaunch_under_torchrun(cfg.num_gpus, ["finetune", *config_to_argv(cfg)])
        return checkpoint_dir(Path(cfg.output_dir), cfg.max_steps)
    ctx = init_distributed()
    try:
        table = base_model_config(cfg.base_model).generation  # each generation has its embodiment table
        plan = resolve_plan(cfg, ctx.device, ctx.world_size, (embodiment_index(cfg.embodiment_tag, table),))
        if ctx.is_main:
            print(plan.describe())
            if plan.compile:
                print("compiling the training step: the first step takes minutes (--compile off skips this)")
        with training_settings(plan):
            return Trainer(cfg, ctx, plan).run()
    finally:
        shutdown(ctx)


def inferred_data_config(dataset_path: str) -> str:
    """The registered data config that fits the dataset's meta/modality.json; says which on stdout."""
    from groot.data.configs import infer_data_config
    from groot.data.modality import ModalitySpec

    modality_json = Path(dataset_path) / "meta" / "modality.json"
    name = infer_data_config(ModalitySpec.load(modality_json), str(modality_json))
    print(f"note: --data-config {name} (inferred from {modality_json}; pass --data-config to choose)")
    return name


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def base_model_config(base_model: str):
    """The model config of a preset name, checkpoint directory or hub id (config.json only)."""
    from groot.model.checkpoint import read_config, resolve_checkpoint_dir
    from groot.model.config import PRESETS, preset_config

    if base_model in PRESETS:
        return preset_config(base_model)
    return read_config(resolve_checkpoint_dir(base_model))


def load_base_model(base_model: str):
    """Preset name -> random weights; otherwise a checkpoint directory or hub id (fp32 on the CPU)."""
    from groot.model.checkpoint import load_pretrained
    from groot.model.config import PRESETS
    from groot.model.gr00t_n16 import model_class

    if base_model in PRESETS:
        config = base_model_config(base_model)
        return model_class(config)(config)
    return load_pretrained(base_model, dtype=torch.float32)


def build_processor(model_config, base_model: str):
    """The collate function: images -> pixels, prompt -> token ids (tokenizer of the base model)."""
    from groot.model.checkpoint import resolve_checkpoint_dir
    from groot.model.config import PRESETS
    from groot.model.processor import GrootProcessor

    model_dir = None if base_model in PRESETS else resolve_checkpoint_dir(base_model)
    return GrootProcessor.for_config(model_config, model_dir)


class Trainer:
    """One training run of `cfg` under `plan`: the loop, with checkpoint saving / resuming and the
    held-out evaluation beside it. The caller holds `training_settings(plan)` around `run()`."""

    def __init__(self, cfg: FinetuneConfig, ctx, plan: TrainPlan):
        self.cfg, self.ctx, self.plan = cfg, ctx, plan
        self.output_dir = Path(cfg.output_dir)

    # ---- setup -------------------------------------------------------------------------------------
    def run(self) -> Path:
        from groot.data.configs import get_data_config
        from groot.train.checkpointing import checkpoint_dir, clean_leftovers, latest_checkpoint
        from groot.train.data import cpu_training_threads, fit_data_config_to_model
        from groot.train.distributed import barrier

        cfg, ctx = self.cfg, self.ctx
        if ctx.is_main:
            clean_leftovers(self.output_dir, cfg.save_total_limit)
        barrier(ctx)
        resume_from = latest_checkpoint(self.output_dir) if cfg.resume else None
        if cfg.resume and resume_from is None and ctx.is_main:
            print(f"--resume: no complete checkpoint in {self.output_dir}; starting from {cfg.base_model}")

        seed_everything(cfg.seed)
        self.prepared = self._model(resume_from)
        self.model, self.raw_model = self.prepared.module, self.prepared.model
        self.data_config = fit_data_config_to_model(get_data_config(cfg.data_config), self.raw_model.config)
        self.dataset = self._dataset(cfg.dataset_path)
        self.processor = build_processor(self.raw_model.config, cfg.base_model)
        self.optimizer, self.schedule = self._optimizer()
        self.train_step = self._graphed_or_plain_step()
        self.step, self.epoch, self.batches_into_epoch = 0, 0, 0
        if resume_from is not None:
            self._resume(resume_from)
        else:  # ranks draw different noise / timesteps
            torch.manual_seed(cfg.seed + 1_000_003 * ctx.rank)
        if self.step < cfg.max_steps:
            with cpu_training_threads(self.plan.loader_workers, ctx.device):
                self._train()
        return checkpoint_dir(self.output_dir, cfg.max_steps)

    def _dataset(self, paths: list[str]):
        from groot.train.data import build_dataset

        cfg = self.cfg
        return build_dataset(paths, self.data_config, cfg.embodiment_tag, cfg.video_backend,
                             cfg.balance_dataset_weights, cfg.balance_trajectory_weights, cfg.seed,
                             cfg.video_cache_dir)

    def _model(self, resume_from: Path | None):
        """Base (or resumed) weights, prepared by the plan."""
        from groot.train.prepare import prepare_model

        # LoRA checkpoints hold merged weights: resume from the base weights plus the saved adapters
        lora = self.plan.lora
        model = load_base_model(str(resume_from) if resume_from and not lora else self.cfg.base_model)
        adapters = resume_from / LORA_ADAPTER_DIR if resume_from is not None and lora else None
        return prepare_model(model, self.plan, lora_weights=adapters)

    def _graphed_or_plain_step(self):
        """The step function `_train_step`, wrapped in `GraphedTrainStep` when the plan uses CUDA graphs."""
        from groot.train.cuda_graph_step import GraphedTrainStep

        if self.plan.cuda_graphs:
            return GraphedTrainStep(self._train_step, self.optimizer)
        return self._train_step

    def _train_step(self, micro_batches: list[MicroBatch]
                    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(device batch, flow-matching times) per micro-batch -> (loss, grad_norm)"""
        from groot.train.step import train_step

        return train_step(self.model, self.optimizer, micro_batches, self.cfg.max_grad_norm, self.plan.bf16)

    def _optimizer(self):
        from groot.train.optim import (
            WarmupCosineSchedule,
            build_optimizer,
            parameter_groups,
            warmup_steps_for,
        )
        from groot.train.precision import training_state_gib

        cfg = self.cfg
        groups = parameter_groups(self.raw_model, cfg.weight_decay)
        optimizer = build_optimizer(groups, cfg.learning_rate, self.plan.trainable_dtype, cfg.seed)
        if self.ctx.is_main:
            trained = sum(p.numel() for group in groups for p in group["params"])
            print(f"trained parameters: {trained / 1e6:.1f} M, weights + grads + AdamW moments "
                  f"{training_state_gib(trained, self.plan.trainable_dtype):.2f} GiB "
                  f"({self.plan.trainable_dtype})")
        schedule = WarmupCosineSchedule(optimizer, warmup_steps_for(cfg.warmup_ratio, cfg.max_steps),
                                        cfg.max_steps)
        return optimizer, schedule

    def _eval_loader(self, dataset):
        """Held-out batches: the first epoch of `dataset` in the run's seeded order."""
        from groot.train.data import ResumableShardedSampler, build_loader

        if hasattr(dataset, "set_epoch"):
            dataset.set_epoch(0)
        sampler = ResumableShardedSampler(len(dataset), self.cfg.seed, self.ctx.rank, self.ctx.world_size)
        return build_loader(dataset, sampler, self.cfg.batch_size, self.processor,
                            self.plan.loader_workers, pin_memory=self.plan.pin_memory)

    def _batches_per_epoch(self) -> int:
        from groot.train.data import batches_per_epoch

        return batches_per_epoch(len(self.dataset), self.ctx.world_size, self.cfg.batch_size,
                                 str(self.cfg.dataset_path))

    # ---- training ----------------------------------------------------------------------------------
    def _micro_batches(self):
        """Endless (epoch, batch) stream starting where the run stands, from one loader; tracks the
        position."""
        from groot.train.data import EpochStream, batches_on_device, build_loader

        per_epoch = self._batches_per_epoch()
        stream = EpochStream(len(self.dataset), self.cfg.seed, self.ctx.rank, self.ctx.world_size,
                             self.cfg.batch_size, self.epoch, self.batches_into_epoch)
        loader = build_loader(self.dataset, stream, self.cfg.batch_size, self.processor,
                              self.plan.loader_workers, pin_memory=self.plan.pin_memory)
        for batch in batches_on_device(loader, self.ctx.device, self.prepared.host_embedding):
            if self.batches_into_epoch == per_epoch:
                self.epoch, self.batches_into_epoch = self.epoch + 1, 0
            self.batches_into_epoch += 1  # counted when handed out
            yield batch

    def _train(self) -> None:
        from tqdm import tqdm

        from groot.train.data import use_eval_transforms
        from groot.train.distributed import mean_across_ranks
        from groot.train.logging import MetricsLogger

        cfg, ctx = self.cfg, self.ctx
        logger = MetricsLogger(self.output_dir, cfg.report_to, dataclasses.asdict(cfg),
                               truncate_after_step=self.step) if ctx.is_main else None
        eval_dataset = (use_eval_transforms(self._dataset(cfg.eval_dataset_path))
                        if cfg.eval_dataset_path else None)
        batches = self._micro_batches()
        per_epoch = self._batches_per_epoch()
        samples_per_step = cfg.batch_size * cfg.gradient_accumulation_steps * ctx.world_size
        window_loss = torch.zeros((), device=ctx.device)
        window_steps, window_start = 0, time.perf_counter()
        if eval_dataset is not None and self.step == 0:  # the baseline held-out loss
            eval_loss = self.evaluate(eval_dataset)
            if logger is not None:
                logger.log(0, {"eval_loss": eval_loss})
        bar = tqdm(total=cfg.max_steps, initial=self.step, desc="finetune", unit="step",
                   disable=not ctx.is_main, dynamic_ncols=True)
        # the first non-finite loss / gradient norm is recorded on the device and read only where the
        # trainer synchronises anyway: when it logs, and before it saves (groot.train.nonfinite)
        watch = NonFiniteWatch(ctx.device)

        def check_finite() -> None:
            watch.check(self._describe_batch, distributed=ctx.is_distributed)

        # a logged window's loss and gradient norm stay on the device until the next step is queued:
        # reading them then waits for the logged step only, so logging never drains the GPU's queue
        pending: dict[str, Any] | None = None

        def flush(check: bool = True) -> None:
            nonlocal pending
            if pending is None:
                return
            step, metrics = pending.pop("step"), {key: float(value) for key, value in pending.items()}
            pending = None
            if logger is not None:
                logger.log(step, metrics)
            bar.set_postfix(loss=f"{metrics['loss']:.4f}", lr=f"{metrics['lr']:.2e}",
                            samples_s=f"{metrics['samples_per_s']:.1f}")
            if check:
                check_finite()

        try:
            while self.step < cfg.max_steps:
                lr = self.schedule.current_lr()
                loss, grad_norm, positions = self._optimizer_step(batches)
                flush()
                self.step += 1
                watch.record(self.step, loss, grad_norm, positions)
                window_loss += loss
                window_steps += 1
                bar.update(1)
                if self.step % cfg.logging_steps == 0 or self.step == cfg.max_steps:
                    elapsed = time.perf_counter() - window_start
                    pending = {"step": self.step, "loss": mean_across_ranks(window_loss, ctx) / window_steps,
                               "lr": lr, "grad_norm": grad_norm.detach(),
                               "samples_per_s": samples_per_step * window_steps / max(elapsed, 1e-9),
                               "epoch": self.epoch + self.batches_into_epoch / per_epoch}
                    window_loss = torch.zeros_like(window_loss)
                    window_steps, window_start = 0, time.perf_counter()
                if eval_dataset is not None and self.step % cfg.eval_steps == 0:
                    flush()
                    eval_loss = self.evaluate(eval_dataset)
                    if logger is not None:
                        logger.log(self.step, {"eval_loss": eval_loss})
                if self.step % cfg.save_steps == 0 or self.step == cfg.max_steps:
                    flush()
                    check_finite()
                    self.save()
        finally:
            flush(check=False)  # the last step was checked before its checkpoint
            batches.close()
            bar.close()
            if logger is not None:
                logger.close()

    def _optimizer_step(self, batches) -> tuple[torch.Tensor, torch.Tensor, list[tuple[int, int]]]:
        """One optimizer step over the next `gradient_accumulation_steps` micro-batches.
        Returns (mean micro-batch loss, pre-clip gradient norm) as device tensors, and the
        (epoch, batch in epoch) position of each micro-batch."""
        from groot.train.step import micro_batch

        micro_batches, positions = [], []
        for _ in range(self.cfg.gradient_accumulation_steps):
            micro_batches.append(micro_batch(self.raw_model, next(batches), self.ctx.device))
            positions.append((self.epoch, self.batches_into_epoch - 1))  # counted when handed out
        loss, grad_norm = self.train_step(micro_batches)
        self.schedule.step()
        return loss, grad_norm, positions

    def _describe_batch(self, epoch: int, batch: int) -> str:
        """The episodes of this process's micro-batch `batch` of epoch `epoch`."""
        from groot.train.data import ResumableShardedSampler
        from groot.train.nonfinite import describe_batch_episodes

        if hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(epoch)
        sampler = ResumableShardedSampler(len(self.dataset), self.cfg.seed, self.ctx.rank,
                                          self.ctx.world_size)
        sampler.set_epoch(epoch, start=batch * self.cfg.batch_size)
        return describe_batch_episodes(self.dataset, iter(sampler), self.cfg.batch_size)

    @torch.no_grad()
    def evaluate(self, dataset) -> float:
        """Mean flow-matching loss on up to `eval_batches` held-out batches, under a fixed seed (the
        training RNG streams are left untouched)."""
        from groot.train.data import batches_on_device
        from groot.train.distributed import mean_across_ranks
        from groot.train.precision import autocast

        devices = [self.ctx.device] if self.ctx.device.type == "cuda" else []
        self.raw_model.eval()
        total, count = torch.zeros((), device=self.ctx.device), 0
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(self.cfg.seed)
            loader = self._eval_loader(dataset)
            for batch in batches_on_device(loader, self.ctx.device, self.prepared.host_embedding):
                with autocast(self.ctx.device, self.plan.bf16):
                    total += self.model(batch)["loss"].float()
                count += 1
                if count >= self.cfg.eval_batches:
                    break
        self.raw_model.train()
        if count == 0:
            raise ConfigError(f"{self.cfg.eval_dataset_path}: fewer samples than one batch of "
                             f"{self.cfg.batch_size} per process")
        return (mean_across_ranks(total, self.ctx) / count).item()

    # ---- checkpoints -------------------------------------------------------------------------------
    def _plain_model_state(self, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The trained state as a plain GR00TN15 state dict: full embodiment tables, LoRA folded in,
        each tied tensor once."""
        from groot.train.lora import merged_state_dict

        prepared = self.prepared
        if prepared.slices is not None:
            state = prepared.slices.full_state_dict(state)
        if prepared.lora_scalings:
            state = merged_state_dict(state, prepared.lora_scalings)
        return {name: tensor for name, tensor in state.items() if name not in prepared.repeated_names}

    def _metadata(self) -> dict[str, Any]:
        metadata = getattr(self.dataset, "metadata", None)
        if metadata is None or isinstance(metadata, dict):
            return metadata
        return {self.cfg.embodiment_tag: metadata}

    def save(self) -> Path | None:
        """Write `checkpoint-<step>` atomically: every rank takes part in gathering the full model and
        optimizer state (FSDP) and saves its RNG; rank 0 writes the rest."""
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

        from groot.model.checkpoint import save_state_dict
        from groot.train import checkpointing as ckpt
        from groot.train.distributed import barrier, full_state_dict
        from groot.train.lora import save_adapters

        ctx = self.ctx
        model_state = full_state_dict(self.model, ctx, sharded=self.plan.fsdp)
        optimizer_state = get_optimizer_state_dict(
            self.model, self.optimizer, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
        tmp = ckpt.temp_dir(self.output_dir, self.step)
        if ctx.is_main:
            ckpt.begin_checkpoint(self.output_dir, self.step)
            save_state_dict(self.raw_model.config, self._plain_model_state(model_state), tmp,
                            metadata=self._metadata(), data_config=self.data_config,
                            tokenizer=getattr(self.processor, "tokenizer", None))
            if self.prepared.lora_scalings:
                save_adapters(self.raw_model, tmp / LORA_ADAPTER_DIR, self.cfg.base_model, model_state)
        barrier(ctx)
        ckpt.save_rng_state(tmp / ckpt.STATE_DIR, ctx.rank)
        barrier(ctx)
        final = None
        if ctx.is_main:
            ckpt.save_optimizer_state(optimizer_state, tmp / ckpt.STATE_DIR)
            ckpt.save_trainer_state(tmp / ckpt.STATE_DIR, {
                "global_step": self.step, "epoch": self.epoch, "batches_into_epoch": self.batches_into_epoch,
                "world_size": ctx.world_size, "schedule": self.schedule.state_dict(),
                "embodiment_ids": list(self.plan.embodiment_ids), "config": dataclasses.asdict(self.cfg),
                "plan": self.plan.to_json()})
            final = ckpt.commit_checkpoint(self.output_dir, self.step)
            ckpt.clean_leftovers(self.output_dir, self.cfg.save_total_limit)  # rotates too
        barrier(ctx)
        return final

    def _resume(self, checkpoint: Path) -> None:
        """Load weights, optimizer, schedule, data position and RNG streams of `checkpoint`."""
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

        from groot.errors import CheckpointError
        from groot.train import checkpointing as ckpt

        state = ckpt.load_trainer_state(checkpoint)
        if state["world_size"] != self.ctx.world_size:
            raise CheckpointError(f"{checkpoint}: saved by {state['world_size']} processes, resumed with "
                                  f"{self.ctx.world_size}; exact resume needs the same number")
        set_optimizer_state_dict(self.model, self.optimizer,
                                 ckpt.load_optimizer_state(checkpoint / ckpt.STATE_DIR),
                                 options=StateDictOptions(full_state_dict=True))
        self.schedule.load_state_dict(state["schedule"])
        self.step, self.epoch = int(state["global_step"]), int(state["epoch"])
        self.batches_into_epoch = int(state["batches_into_epoch"])
        ckpt.load_rng_state(checkpoint / ckpt.STATE_DIR, self.ctx.rank)

