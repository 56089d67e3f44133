"""AdamW over bf16 parameters with bf16 moments and stochastically rounded updates (8 B per trainable
parameter with its bf16 gradient, against 16 B for fp32 weights, gradients and moments).

Each step computes in fp32, per parameter: the gradient (divided by `grad_scale` when the caller set it,
as clipping does), both moments, the bias-corrected AdamW update with decoupled weight decay, and then
rounds the new weight and both new moments to bf16 stochastically (`stochastic_rounding`). Rounding to
nearest would lose every update below half a bf16 step (2^-9 relative): an lr 1e-4 step, and also the
(1 - beta2) = 1e-3 decay of the second moment, which would then never shrink.

The random bits of a rounding are a hash of (seed, the parameter's step count, the parameter's index in
the groups, which tensor): a resumed run that loads the step counts rounds exactly as the uninterrupted
one, every DDP rank rounds its identical replica identically, and no torch generator is touched. The
step count, the bias corrections and a tensor learning rate stay on the device, so a step has no host
synchronisation and can be recorded in a CUDA graph (`capturable` is accepted and changes nothing).
"""

from __future__ import annotations

import torch

from groot.train.stochastic_rounding import hash_key, random_bits16, stochastic_round_to_bf16

_WEIGHT, _EXP_AVG, _EXP_AVG_SQ = 0, 1, 2  # rounding streams of one parameter


class StochasticRoundingAdamW(torch.optim.Optimizer):
    """AdamW for bf16 parameters; state per parameter: `step` (float32 scalar on the parameter's device),
    `exp_avg`, `exp_avg_sq` (bf16, the parameter's shape). Contract of the fp32 AdamW otherwise."""

    accepts_grad_scale = True  # `clip_and_step` sets `grad_scale` (a divisor tensor) around `step`
    grad_scale: torch.Tensor | None = None

    def __init__(self, params, lr: float, betas: tuple[float, float], eps: float, weight_decay: float = 0.0,
                 seed: int = 0):
        defaults = dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay, seed=int(seed),
                        capturable=False)
        super().__init__(params, defaults)
        for group in self.param_groups:
            for param in group["params"]:
                if param.dtype != torch.bfloat16:
                    raise TypeError(f"StochasticRoundingAdamW: parameters must be bf16, found {param.dtype}")
        self.register_load_state_dict_post_hook(_steps_to_parameter_devices)

    @torch.no_grad()
    def step(self, closure=None):
        if closure is not None:
            raise ValueError("StochasticRoundingAdamW.step: closures are not supported")
        index = 0
        for group in self.param_groups:
            for param in group["params"]:
                if param.grad is not None:
                    self._update(param, group, index)
                index += 1

    def _update(self, param: torch.Tensor, group: dict, index: int) -> None:
        state = self.state[param]
        if not state:
            state["step"] = torch.zeros((), dtype=torch.float32, device=param.device)
            state["exp_avg"] = torch.zeros_like(param, memory_format=torch.preserve_format)
            state["exp_avg_sq"] = torch.zeros_like(param, memory_format=torch.preserve_format)
        beta1, beta2 = group["betas"]
        lr, eps, decay = group["lr"], group["eps"], group["weight_decay"]
        step = state["step"]
        step += 1
        grad = param.grad.float()
        if self.grad_scale is not None:
            grad = grad / self.grad_scale
        exp_avg = state["exp_avg"].float().mul_(beta1).add_(grad, alpha=1 - beta1)
        exp_avg_sq = state["exp_avg_sq"].float().mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        del grad
        bias_correction1 = 1 - torch.pow(beta1, step)
        bias_correction2_sqrt = torch.sqrt(1 - torch.pow(beta2, step))
        update = (exp_avg_sq.sqrt() / bias_correction2_sqrt).add_(eps)
        update = torch.div(exp_avg, update).mul_(lr / bias_correction1)
        weight = param.float()
        if decay:
            weight.mul_(1 - lr * decay)
        weight.sub_(update)
        del update
        key = hash_key(group["seed"], step.to(torch.int64), index)
        for target, value, stream in ((param, weight, _WEIGHT), (state["exp_avg"], exp_avg, _EXP_AVG),
                                      (state["exp_avg_sq"], exp_avg_sq, _EXP_AVG_SQ)):
            bits = random_bits16(value.numel(), hash_key(key, stream), value.device)
            target.copy_(stochastic_round_to_bf16(value, bits))


def _steps_to_parameter_devices(optimizer: torch.optim.Optimizer) -> None:
    """Loaded step counts may arrive on the CPU; the step keeps them on the parameter's device."""
    for param, state in optimizer.state.items():
        if isinstance(state.get("step"), torch.Tensor):
            state["step"] = state["step"].to(device=param.device, dtype=torch.float32)
