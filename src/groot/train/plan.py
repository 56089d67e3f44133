"""`TrainPlan`: every "auto" choice of a fine-tuning run, resolved once from the config, the device and
the number of processes, before a model is loaded.

The trainer, `prepare_model` and the step read the plan, never the config's "auto" values; the plan is
printed at start (`describe`) and saved in each checkpoint's trainer state. An "on" that cannot be
honoured (CUDA graphs on the CPU, the host token table while the LLM trains) is a `ConfigError` here.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch

from groot.errors import ConfigError
from groot.train.finetune_config import FinetuneConfig
from groot.train.precision import TRAINING_BYTES_PER_PARAM


@dataclass(frozen=True)
class TrainPlan:
    device: str  # "cuda:0", "cpu", ...
    world_size: int  # training processes
    bf16: bool  # bf16 autocast; frozen weights stored in bf16 (FSDP: bf16 compute instead)
    trainable_dtype: str  # "fp32" | "bf16": trained weights, gradients, AdamW moments (bf16: rounded
    #                       stochastically by StochasticRoundingAdamW)
    tf32: bool  # TF32 matmuls / convolutions while training (restored afterwards)
    fsdp: bool  # FSDP2 sharding (else DDP when world_size > 1)
    # tune LLM, visual, projector, diffusion model; top LLM layers of a frozen LLM
    trainable: tuple[bool, bool, bool, bool, int]
    lora_rank: int  # 0: no LoRA
    lora_alpha: float
    lora_dropout: float
    lora_full_model: bool  # adapters on q/k/v of the whole model, not only the action head
    embodiment_ids: tuple[int, ...]  # projector rows the data uses
    embodiment_slices: bool  # train only those rows of the per-embodiment tables (not with FSDP)
    activation_checkpointing: bool
    compile: bool  # torch.compile of the model's forward / backward
    activation_memory_budget: float  # what the compiled step keeps for the backward (with `compile`)
    cuda_graphs: bool  # the whole step recorded and replayed (GraphedTrainStep)
    host_token_embedding: bool  # frozen token table in host memory (HostTokenEmbedding)
    loader_workers: int  # DataLoader worker processes per training process
    pin_memory: bool  # loader batches in page-locked memory (CUDA)

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def lora(self) -> bool:
        return self.lora_rank > 0

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def describe(self) -> str:
        """One line naming every choice, e.g. `plan: cuda:0 x1, bf16+tf32, compile (budget 0.7), ...`."""
        def flag(name: str, on: bool) -> str:
            return name if on else f"no {name}"

        parallel = "FSDP" if self.fsdp else "DDP" if self.distributed else "one process"
        compiled = f"compile (budget {self.activation_memory_budget:g})" if self.compile else "eager"
        precision = "bf16+tf32" if self.bf16 and self.tf32 else "bf16" if self.bf16 else "fp32"
        rounding = " stochastic rounding" if self.trainable_dtype == "bf16" else ""
        trained = (f"trainable {self.trainable_dtype}{rounding} "
                   f"({TRAINING_BYTES_PER_PARAM[self.trainable_dtype]} B/param with grads + AdamW)")
        slices = (f"embodiment slices {list(self.embodiment_ids)}" if self.embodiment_slices
                  else "whole embodiment tables")
        return ", ".join([
            f"plan: {self.device} x{self.world_size} ({parallel})", precision, trained, compiled,
            flag("CUDA graphs", self.cuda_graphs), flag("host token table", self.host_token_embedding),
            slices, f"LoRA rank {self.lora_rank}" if self.lora else "no LoRA",
            flag("activation checkpointing", self.activation_checkpointing),
            f"{self.loader_workers} loader workers"])


def resolve_plan(cfg: FinetuneConfig, device: torch.device, world_size: int,
                 embodiment_ids: tuple[int, ...]) -> TrainPlan:
    """The plan of `cfg` on `device` with `world_size` processes; raises ConfigError for an "on" that
    cannot be honoured there."""
    from groot.train.data import loader_workers

    cuda, distributed, lora = device.type == "cuda", world_size > 1, cfg.lora_rank > 0
    fsdp = distributed and (cfg.fsdp == "on" or (cfg.fsdp == "auto" and (cfg.tune_llm or cfg.tune_visual)))
    _check_trainable_dtype(cfg, lora, fsdp)
    # bf16 trained weights need bf16 compute: on the CPU too (slow there, so only then)
    bf16 = cfg.bf16 and (cuda or cfg.trainable_dtype == "bf16")
    compile_ = cfg.compile == "on" or (cfg.compile == "auto" and cuda and not distributed and not lora)
    return TrainPlan(
        device=str(device), world_size=world_size, bf16=bf16, trainable_dtype=cfg.trainable_dtype,
        tf32=bf16 and cuda, fsdp=fsdp,
        trainable=(cfg.tune_llm, cfg.tune_visual, cfg.tune_projector, cfg.tune_diffusion_model,
                   cfg.tune_top_llm_layers),
        lora_rank=cfg.lora_rank, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
        lora_full_model=cfg.lora_full_model,
        embodiment_ids=tuple(embodiment_ids),
        embodiment_slices=not fsdp,  # FSDP shards parameters itself: the tables train whole there
        activation_checkpointing=cfg.gradient_checkpointing, compile=compile_,
        activation_memory_budget=cfg.activation_memory_budget,
        cuda_graphs=_cuda_graphs(cfg, cuda, distributed, compile_),
        host_token_embedding=_host_token_embedding(cfg, cuda, fsdp),
        loader_workers=loader_workers(cfg.dataloader_num_workers, device), pin_memory=cuda)


def _check_trainable_dtype(cfg: FinetuneConfig, lora: bool, fsdp: bool) -> None:
    if cfg.trainable_dtype == "fp32":
        return
    blocker = ("bf16 compute is off (--no-bf16)" if not cfg.bf16 else
               "LoRA trains the adapters (--lora-rank > 0; few parameters: keep them fp32)" if lora else
               "FSDP shards the parameters" if fsdp else None)
    if blocker:
        raise ConfigError(f"--trainable-dtype {cfg.trainable_dtype}: not possible when {blocker}")


def _cuda_graphs(cfg: FinetuneConfig, cuda: bool, distributed: bool, compiled: bool) -> bool:
    if cfg.cuda_graphs == "off":
        return False
    blocker = ("the device is not CUDA" if not cuda else
               "training is distributed" if distributed else None)
    if blocker:
        if cfg.cuda_graphs == "on":
            raise ConfigError(f"--cuda-graphs on: not possible when {blocker}")
        return False
    return cfg.cuda_graphs == "on" or compiled


def _host_token_embedding(cfg: FinetuneConfig, cuda: bool, fsdp: bool) -> bool:
    if cfg.host_token_embedding == "off":
        return False
    blocker = ("the LLM trains (--tune-llm)" if cfg.tune_llm else
               "FSDP shards the table" if fsdp else None)
    if cfg.host_token_embedding == "on" and blocker:
        raise ConfigError(f"--host-token-embedding on: not possible when {blocker}")
    return blocker is None and (cfg.host_token_embedding == "on" or cuda)
