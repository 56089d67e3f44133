"""The model side of a `TrainPlan`: `prepare_model` turns loaded weights into the module the training
step calls, in one fixed order; `training_settings` holds the plan's process-wide settings while
training runs and restores them afterwards."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from groot.train.plan import TrainPlan


@dataclass
class PreparedModel:
    module: nn.Module  # what the step calls: the DDP wrapper, or the model itself (FSDP shards in place)
    model: nn.Module  # the GR00TN15 underneath: config, parameters, train / eval mode
    slices: object | None  # EmbodimentSlices: writes the full tables back into a saved state dict
    lora_scalings: dict[str, float]  # adapter name -> alpha / rank, for merging adapters into weights
    repeated_names: set[str]  # tied parameters' second names (the LLM's lm_head), left out when saving
    host_embedding: object | None  # HostTokenEmbedding: looks prompts up before batches go to the device


def prepare_model(model: nn.Module, plan: TrainPlan, lora_weights: Path | None = None) -> PreparedModel:
    """Apply `plan` to freshly loaded `model` (fp32, on the CPU), in place; `lora_weights`: a saved
    adapter directory to load into the new adapters (resuming a LoRA run)."""
    from groot.train.distributed import wrap_ddp, wrap_fsdp
    from groot.train.embodiment_slices import EmbodimentSlices
    from groot.train.host_embedding import HostTokenEmbedding
    from groot.train.lora import apply_lora, load_adapter_weights, lora_scalings
    from groot.train.precision import (
        cast_frozen_to_bf16,
        cast_trainable_to_bf16,
        compile_for_training,
        enable_activation_checkpointing,
    )

    # 1. trainable flags first: every later step looks at requires_grad
    model.set_trainable(*plan.trainable)
    # 2. LoRA adapters (trainable, fp32) replace the targeted linears; a resumed run loads its saved ones
    if plan.lora:
        apply_lora(model, plan.lora_rank, plan.lora_alpha, plan.lora_dropout, plan.lora_full_model)
        if lora_weights is not None:
            load_adapter_weights(model, lora_weights)
    scalings = lora_scalings(model) if plan.lora else {}
    repeated = repeated_parameter_names(model)
    # 3. embodiment slices swap trainable tables for their used rows while all weights are fp32 on the
    #    host (the full tables stay there for saving)
    slices = EmbodimentSlices(model, list(plan.embodiment_ids)) if plan.embodiment_slices else None
    # 4. activation checkpointing wraps the forwards of the trainable blocks, before compile traces them
    if plan.activation_checkpointing:
        enable_activation_checkpointing(model)
    # 5. frozen weights to bf16 once their trainable flags are final (FSDP casts for compute instead)
    if plan.bf16 and not plan.fsdp:
        cast_frozen_to_bf16(model)
    #    trained weights to bf16 too when the plan trains them in bf16 (after the slices took their rows)
    if plan.trainable_dtype == "bf16":
        cast_trainable_to_bf16(model)
    # 6. onto the device, in training mode
    model = model.to(torch.device(plan.device)).train()
    # 7. compile (lazily: graphs compile at the first step, inside `training_settings`)
    if plan.compile:
        compile_for_training(model)
    # 8. the parallel wrapper: backbone layers are FSDP units; the action head stays in the root unit, as
    #    its sampling and conditioning code calls into DiT blocks outside their forward
    if plan.fsdp:
        return PreparedModel(wrap_fsdp(model, plan.bf16, sharded_blocks_of=model.backbone), model, slices,
                             scalings, repeated, None)
    module = wrap_ddp(model, torch.device(plan.device)) if plan.distributed else model
    # 9. the token table to the host, after DDP has broadcast rank 0's parameters
    host_embedding = HostTokenEmbedding(model) if plan.host_token_embedding else None
    return PreparedModel(module, model, slices, scalings, repeated, host_embedding)


@contextlib.contextmanager
def training_settings(plan: TrainPlan) -> Iterator[None]:
    """The plan's process-wide settings (TF32; inductor / functorch settings of the compiled step) while
    inside; the values from before are back on exit, so a Policy built later in the process sees none."""
    from groot.train.precision import compiled_step_settings, tf32_matmuls

    with contextlib.ExitStack() as stack:
        stack.enter_context(tf32_matmuls(plan.tf32))
        if plan.compile:
            stack.enter_context(compiled_step_settings(plan.activation_memory_budget))
        yield


def repeated_parameter_names(model: nn.Module) -> set[str]:
    """Names under which an already listed parameter appears again (tied weights: the LLM's lm_head)."""
    seen: set[int] = set()
    repeats = set()
    for name, param in model.named_parameters(remove_duplicate=False):
        if id(param) in seen:
            repeats.add(name)
        seen.add(id(param))
    return repeats
