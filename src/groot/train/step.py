"""The training step shared by `finetune` and the throughput benchmark: micro-batches in, one AdamW
step out, with no host synchronisation inside (so `GraphedTrainStep` can record it)."""

from __future__ import annotations

import torch
from torch import nn

from groot.model.batch import Batch

MicroBatch = tuple[Batch, torch.Tensor | None]  # (device batch, flow-matching times [B] or None)


def draw_flow_times(model: nn.Module, batch: Batch, device: torch.device) -> torch.Tensor | None:
    """On CUDA, the flow-matching times [B] on the device, drawn now from the host RNG as the action head
    would draw them inside the step (its noise comes from the device generator, so the order of the two
    draws changes nothing; a CUDA-graphed step cannot draw on the host). Elsewhere None: on the CPU both
    draws share one generator and the action head keeps their order."""
    if device.type != "cuda":
        return None
    t = model.action_head.sample_time(batch.action.shape[0], torch.device("cpu"))
    return t.pin_memory().to(device, non_blocking=True)


def micro_batch(model: nn.Module, batch: Batch, device: torch.device) -> MicroBatch:
    """A device batch and its `draw_flow_times`: one element of `train_step`'s micro-batches."""
    return batch, draw_flow_times(model, batch, device)


def train_step(model: nn.Module, optimizer: torch.optim.Optimizer, micro_batches: list[MicroBatch],
               max_grad_norm: float, bf16: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Forward/backward over the micro-batches (gradients synchronised across DDP ranks on the last one),
    clip to `max_grad_norm` (<= 0: no clipping), AdamW step, gradients cleared.
    Returns (mean micro-batch loss, pre-clip gradient norm) as device tensors."""
    from groot.train.distributed import gradient_sync
    from groot.train.optim import clip_and_step
    from groot.train.precision import autocast

    device = micro_batches[0][0].action.device
    accumulate = len(micro_batches)
    total = torch.zeros((), device=device)
    for index, (batch, t) in enumerate(micro_batches):
        with gradient_sync(model, enabled=index == accumulate - 1):
            with autocast(device, bf16):
                loss = model(batch, t=t)["loss"]
            (loss / accumulate).backward()
        total += loss.detach().float()
    grad_norm = clip_and_step(optimizer, max_grad_norm if max_grad_norm > 0 else float("inf"))
    optimizer.zero_grad(set_to_none=True)
    return total / accumulate, grad_norm
