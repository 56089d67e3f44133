"""The training step shared by `finetune` and the throughput benchmark: micro-batches in, one AdamW
step out, with no host synchronisation inside (so `GraphedTrainStep` can record it)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


def with_flow_time(model: nn.Module, batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    """On CUDA, the batch plus `flow_time` [B]: the flow-matching times drawn now, from the host RNG, as
    the action head would draw them inside the step (its noise comes from the device generator, so
    the order of the two draws changes nothing). Elsewhere the batch as it is: on the CPU both draws
    share one generator and the action head keeps their order."""
    if device.type != "cuda":
        return batch
    flow_time = model.action_head.sample_time(batch["action"].shape[0], torch.device("cpu"))
    return {**batch, "flow_time": flow_time.pin_memory().to(device, non_blocking=True)}


def train_step(model: nn.Module, optimizer: torch.optim.Optimizer, micro_batches: list[dict[str, Any]],
               max_grad_norm: float, bf16: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Forward/backward over the micro-batches (gradients synchronised across DDP ranks on the last one),
    clip to `max_grad_norm` (<= 0: no clipping), AdamW step, gradients cleared.
    Returns (mean micro-batch loss, pre-clip gradient norm) as device tensors."""
    from groot.train.distributed import gradient_sync
    from groot.train.optim import clip_and_step
    from groot.train.precision import autocast

    device = micro_batches[0]["action"].device
    accumulate = len(micro_batches)
    total = torch.zeros((), device=device)
    for index, batch in enumerate(micro_batches):
        with gradient_sync(model, enabled=index == accumulate - 1):
            with autocast(device, bf16):
                loss = model(batch)["loss"]
            (loss / accumulate).backward()
        total += loss.detach().float()
    grad_norm = clip_and_step(optimizer, max_grad_norm if max_grad_norm > 0 else float("inf"))
    optimizer.zero_grad(set_to_none=True)
    return total / accumulate, grad_norm
