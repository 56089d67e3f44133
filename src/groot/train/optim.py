"""Optimizer and learning-rate schedule of the official fine-tuning recipe (spec 10).

AdamW, betas (0.95, 0.999), eps 1e-8, two parameter groups: weight decay for every trainable tensor
except biases (any name containing "bias", the official name rule) and the weights of normalization
layers. The schedule is linear warmup then cosine decay to zero, stepped once per optimizer step.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import nn

from groot.errors import ConfigError

ADAM_BETAS = (0.95, 0.999)
ADAM_EPS = 1e-8
_NORM_TYPES = (nn.LayerNorm, nn.GroupNorm, nn.RMSNorm, nn.BatchNorm1d, nn.BatchNorm2d)


def _is_norm_module(module: nn.Module) -> bool:
    """LayerNorm-like modules, including custom ones (`Qwen3RMSNorm`, `LlamaRMSNorm`, ...)."""
    return isinstance(module, _NORM_TYPES) or type(module).__name__.lower().endswith("norm")


def no_decay_parameter_names(model: nn.Module) -> set[str]:
    """Names of parameters that get no weight decay: biases and parameters owned by norm layers."""
    names: set[str] = set()
    for module_name, module in model.named_modules():
        for param_name, _ in module.named_parameters(recurse=False):
            full = f"{module_name}.{param_name}" if module_name else param_name
            if "bias" in param_name or _is_norm_module(module):
                names.add(full)
    return names


def parameter_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """The two official AdamW groups over the trainable parameters (named, for JSON-able state)."""
    no_decay = no_decay_parameter_names(model)
    decay_group = {"params": [], "param_names": [], "weight_decay": weight_decay}
    plain_group = {"params": [], "param_names": [], "weight_decay": 0.0}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        group = plain_group if name in no_decay else decay_group
        group["params"].append(param)
        group["param_names"].append(name)
    return [g for g in (decay_group, plain_group) if g["params"]]


def build_optimizer(groups: Iterable[dict], learning_rate: float, trainable_dtype: str = "fp32",
                    seed: int = 0) -> torch.optim.Optimizer:
    """AdamW over `groups`: for fp32 parameters torch's AdamW, the fused CUDA kernel when every parameter
    lives on a CUDA device; for `trainable_dtype` "bf16" (bf16 parameters) `StochasticRoundingAdamW`,
    its rounding bits derived from `seed` and the step."""
    groups = list(groups)
    if not groups:
        raise ConfigError("nothing to train: every parameter is frozen (check the --tune-* flags)")
    if trainable_dtype == "bf16":
        from groot.train.bf16_adamw import StochasticRoundingAdamW

        return StochasticRoundingAdamW(groups, lr=learning_rate, betas=ADAM_BETAS, eps=ADAM_EPS, seed=seed)
    on_cuda = all(p.is_cuda for g in groups for p in g["params"])
    return torch.optim.AdamW(groups, lr=learning_rate, betas=ADAM_BETAS, eps=ADAM_EPS,
                             fused=True if on_cuda else None)


def gradient_norm(grads: list[torch.Tensor]) -> torch.Tensor:
    """Global L2 norm of `grads` as a float32 scalar on their device (no host synchronisation); bf16
    gradients are summed in fp32."""
    if not grads:
        return torch.zeros(())
    if all(g.dtype == torch.float32 for g in grads):
        norms = torch._foreach_norm(grads)
    else:
        norms = torch._foreach_norm(grads, 2, dtype=torch.float32)
    return torch.linalg.vector_norm(torch.stack(norms))


def clip_and_step(optimizer: torch.optim.Optimizer, max_norm: float) -> torch.Tensor:
    """Scale the gradients by min(1, max_norm / (norm + 1e-6)) (as `clip_grad_norm_`), then step.
    Returns the pre-clip global norm (a device tensor). A fused optimizer (and `StochasticRoundingAdamW`)
    takes the scale as its `grad_scale` divisor, applied in its own pass: no separate pass over the
    gradients. Nothing here
    waits for the device, so the whole step can be captured in a CUDA graph."""
    grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
    norm = gradient_norm(grads)
    divisor = torch.clamp((norm + 1e-6) / max_norm, min=1.0)
    if optimizer.defaults.get("fused") or getattr(optimizer, "accepts_grad_scale", False):
        optimizer.grad_scale = divisor
        try:
            optimizer.step()
        finally:
            del optimizer.grad_scale
    else:
        torch._foreach_div_(grads, divisor)
        optimizer.step()
    return norm


def warmup_steps_for(warmup_ratio: float, total_steps: int) -> int:
    """Warmup length as the HF Trainer computes it from a ratio: ceil(ratio * total)."""
    return math.ceil(warmup_ratio * total_steps)


class WarmupCosineSchedule:
    """lr(step) = base * step / warmup during warmup, then base * 0.5 * (1 + cos(pi * progress)).

    `step` counts optimizer steps already taken; the state is one integer (JSON-able).
    """

    def __init__(self, optimizer: torch.optim.Optimizer, warmup_steps: int, total_steps: int):
        self.optimizer = optimizer
        self.warmup_steps = warmup_steps
        self.total_steps = total_steps
        self.base_lrs = [group["lr"] for group in optimizer.param_groups]
        self.step_count = 0
        self._apply()

    def factor(self, step: int) -> float:
        if step < self.warmup_steps:
            return step / max(1, self.warmup_steps)
        progress = (step - self.warmup_steps) / max(1, self.total_steps - self.warmup_steps)
        return max(0.0, 0.5 * (1.0 + math.cos(math.pi * progress)))

    def current_lr(self) -> float:
        return self.optimizer.param_groups[0]["lr"]

    def step(self) -> None:
        self.step_count += 1
        self._apply()

    def _apply(self) -> None:
        scale = self.factor(self.step_count)
        for group, base in zip(self.optimizer.param_groups, self.base_lrs, strict=True):
            group["lr"] = base * scale

    def state_dict(self) -> dict:
        return {"step_count": self.step_count, "warmup_steps": self.warmup_steps,
                "total_steps": self.total_steps, "base_lrs": list(self.base_lrs)}

    def load_state_dict(self, state: dict) -> None:
        self.step_count = int(state["step_count"])
        self.base_lrs = [float(lr) for lr in state["base_lrs"]]
        self._apply()
