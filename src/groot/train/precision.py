"""Numerics and activation memory of training: bf16 autocast with frozen weights stored in bf16,
trained weights in fp32 (or in bf16, updated by `bf16_adamw.StochasticRoundingAdamW`), TF32 matmuls,
optional torch.compile (with a budget for the activations it keeps) and activation checkpointing.

The process-wide switches (`tf32_matmuls`, `compiled_step_settings`) are context managers: they hold
while training runs and the previous values return on exit."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from groot.train.blocks import outermost_blocks


@contextlib.contextmanager
def tf32_matmuls(enabled: bool = True) -> Iterator[None]:
    """TF32 CUDA matmuls and convolutions inside (when `enabled`); the previous flags restored on exit."""
    if not enabled:
        yield
        return
    before = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before


def cast_frozen_to_bf16(model: nn.Module) -> int:
    """Store every frozen floating-point parameter in bf16 (halves their memory; under autocast the
    matmuls run in bf16 anyway). Returns the number of parameters cast. Trainable parameters stay as
    they are: an AdamW update of size lr*1e-4 rounded to nearest in bf16's 8-bit mantissa would vanish
    (`cast_trainable_to_bf16` is for the stochastically rounding optimizer)."""
    return _cast_to_bf16(model, trainable=False)


def cast_trainable_to_bf16(model: nn.Module) -> int:
    """Store every trainable floating-point parameter in bf16 (its gradient is then bf16 too); only for
    training with `StochasticRoundingAdamW`. Returns the number of parameters cast."""
    return _cast_to_bf16(model, trainable=True)


def _cast_to_bf16(model: nn.Module, trainable: bool) -> int:
    count = 0
    for param in model.parameters():
        if param.requires_grad == trainable and param.is_floating_point() and param.dtype != torch.bfloat16:
            param.data = param.data.to(torch.bfloat16)
            count += param.numel()
    return count


# bytes per trained parameter for its weight, gradient and both AdamW moments
TRAINING_BYTES_PER_PARAM = {"fp32": 4 + 4 + 2 * 4, "bf16": 2 + 2 + 2 * 2}


def training_state_gib(num_trainable: int, trainable_dtype: str) -> float:
    """GiB held by the trained parameters' weights, gradients and AdamW moments (before activations)."""
    return num_trainable * TRAINING_BYTES_PER_PARAM[trainable_dtype] / 2**30


def autocast(device: torch.device, bf16: bool):
    """bf16 autocast when asked, else plain fp32. The plan asks on CUDA, and on the CPU only for bf16
    trained weights (CPU bf16 autocast is slow)."""
    if bf16:
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def compile_for_training(model: nn.Module) -> None:
    """Compile the model's forward (and so its backward) with torch.compile, in place: parameter names
    and the state dict stay as they are. Fuses the elementwise work between the matmuls and the
    autocast weight casts, and recomputes cheap elementwise results in the backward instead of keeping
    them: a faster step at lower peak memory. New prompt lengths trigger one more compile, after which
    the sequence dimension is treated as dynamic.

    Graphs compile when the model first runs (and on every recompile), so its steps must run inside
    `compiled_step_settings`: that is what keeps the random draws those of the eager model."""
    model.compile()


@contextlib.contextmanager
def compiled_step_settings(activation_memory_budget: float = 1.0) -> Iterator[None]:
    """Inductor and functorch settings for compiling training steps, patched inside, restored on exit.

    Random numbers (noise, timesteps, dropout) come from the eager generators (`fallback_random`) and
    are never recomputed in the backward, so a seed gives the same draws compiled or not.
    `activation_memory_budget` in (0, 1) lets the partitioner recompute more in the backward, keeping
    about that fraction of the activations it would keep at 1.0 (PyTorch's exactly-0 mode recomputes
    even random draws, so 0 is refused by `validate`)."""
    import torch._functorch.config
    import torch._inductor.config

    with torch._inductor.config.patch(fallback_random=True,
                                      joint_custom_pre_pass=_save_random_draws_pass()), \
            torch._functorch.config.patch(activation_memory_budget=activation_memory_budget):
        yield


def _save_random_draws_pass():
    """An inductor joint-graph pass that marks every random op (dropout, randn, ...) "must save".

    With `fallback_random` the draws come from the eager generator; if the partitioner recomputed one in
    the backward (its memory-budget solver may pick any op), the backward would see a different dropout
    mask than the forward and every later draw would shift."""
    from torch._inductor.custom_graph_pass import CustomGraphPass
    from torch.utils.checkpoint import CheckpointPolicy

    class SaveRandomDraws(CustomGraphPass):
        def __call__(self, graph: torch.fx.Graph) -> None:
            for node in graph.nodes:
                if (node.op == "call_function"
                        and torch.Tag.nondeterministic_seeded in getattr(node.target, "tags", ())):
                    node.meta["recompute"] = CheckpointPolicy.MUST_SAVE

        def uuid(self) -> str:  # part of inductor's cache key
            return "groot-save-random-draws-1"

    return SaveRandomDraws()


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
