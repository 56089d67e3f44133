"""Numerics and activation memory of training: bf16 autocast with frozen weights stored in bf16,
fp32 master weights for everything that trains, TF32 matmuls, optional torch.compile and activation
checkpointing."""

from __future__ import annotations

import contextlib

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from groot.train.blocks import outermost_blocks


def enable_tf32() -> None:
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True


def cast_frozen_to_bf16(model: nn.Module) -> int:
    """Store every frozen floating-point parameter in bf16 (halves their memory; under autocast the
    matmuls run in bf16 anyway). Trainable parameters stay fp32: AdamW updates of size lr*1e-4 would
    vanish in bf16's 8-bit mantissa. Returns the number of parameters cast."""
    count = 0
    for param in model.parameters():
        if not param.requires_grad and param.is_floating_point() and param.dtype != torch.bfloat16:
            param.data = param.data.to(torch.bfloat16)
            count += param.numel()
    return count


def autocast(device: torch.device, bf16: bool):
    """bf16 autocast on CUDA when asked; plain fp32 elsewhere (CPU bf16 autocast is slow)."""
    if bf16 and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def compile_for_training(model: nn.Module) -> None:
    """Compile the model's forward (and so its backward) with torch.compile, in place: parameter names
    and the state dict stay as they are. Fuses the elementwise work between the matmuls and the
    autocast weight casts, and recomputes cheap elementwise results in the backward instead of keeping
    them: a faster step at lower peak memory. Random numbers (noise, timesteps, dropout) come from the
    eager generators, so a seed gives the same draws compiled or not. New prompt lengths trigger one
    more compile, after which the sequence dimension is treated as dynamic."""
    import torch._inductor.config

    torch._inductor.config.fallback_random = True
    model.compile()


def enable_activation_checkpointing(model: nn.Module) -> int:
    """Recompute the activations of every trainable block (`outermost_blocks`) in the backward pass.
    Returns the count."""
    blocks = outermost_blocks(model, trainable_only=True)
    for _, block in blocks:
        block.forward = _checkpointed(block.forward)
    return len(blocks)


def _checkpointed(forward):
    def run(*args, **kwargs):
        return checkpoint(forward, *args, use_reentrant=False, **kwargs)
    return run
