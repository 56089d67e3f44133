import math

import pytest
import torch
from torch import nn

from groot.model.action_head import CategorySpecificLinear
from groot.train.optim import (
    ADAM_BETAS,
    WarmupCosineSchedule,
    build_optimizer,
    clip_and_step,
    gradient_norm,
    parameter_groups,
    warmup_steps_for,
)


class _CustomRMSNorm(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))


class _Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(4, 4)
        self.norm = nn.LayerNorm(4)
        self.rms = _CustomRMSNorm(4)
        self.table = CategorySpecificLinear(3, 4, 4)
        self.embed = nn.Embedding(5, 4)
        self.frozen = nn.Linear(4, 4)
        self.frozen.requires_grad_(False)


def test_groups_exclude_biases_and_norm_weights_and_frozen():
    groups = parameter_groups(_Net(), weight_decay=0.1)
    by_decay = {g["weight_decay"]: set(g["param_names"]) for g in groups}
    assert by_decay[0.1] == {"proj.weight", "table.W", "table.b", "embed.weight"}
    assert by_decay[0.0] == {"proj.bias", "norm.weight", "norm.bias", "rms.weight"}


def test_optimizer_hyperparameters_and_empty_error():
    optimizer = build_optimizer(parameter_groups(_Net(), 1e-5), learning_rate=1e-4)
    assert optimizer.defaults["betas"] == ADAM_BETAS and optimizer.defaults["eps"] == 1e-8
    frozen = nn.Linear(2, 2).requires_grad_(False)
    with pytest.raises(ValueError, match="frozen"):
        build_optimizer(parameter_groups(frozen, 1e-5), learning_rate=1e-4)


def test_warmup_then_cosine_values():
    assert warmup_steps_for(0.05, 10000) == 500 and warmup_steps_for(0.05, 30) == 2
    param = nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.AdamW([param], lr=2.0)
    schedule = WarmupCosineSchedule(optimizer, warmup_steps=4, total_steps=12)
    lrs = []
    for _ in range(13):
        lrs.append(schedule.current_lr())
        schedule.step()
    assert lrs[:5] == pytest.approx([0.0, 0.5, 1.0, 1.5, 2.0])
    assert lrs[8] == pytest.approx(2.0 * 0.5 * (1 + math.cos(math.pi * 0.5)))  # halfway: 1.0
    assert lrs[12] == pytest.approx(0.0, abs=1e-12)
    assert all(a >= b for a, b in zip(lrs[4:-1], lrs[5:], strict=True))
    restored = WarmupCosineSchedule(torch.optim.AdamW([param], lr=2.0), warmup_steps=4, total_steps=12)
    schedule_at_6 = WarmupCosineSchedule(torch.optim.AdamW([param], lr=2.0), 4, 12)
    for _ in range(6):
        schedule_at_6.step()
    restored.load_state_dict(schedule_at_6.state_dict())
    assert restored.current_lr() == pytest.approx(lrs[6])


@pytest.mark.parametrize("fused", [False, True])
@pytest.mark.parametrize("max_norm", [0.05, 1e3])
def test_clip_and_step_matches_clip_grad_norm_then_step(fused, max_norm):
    """Clipped (max_norm below the norm) and unclipped: the same update as `clip_grad_norm_` + `step`,
    whether the scale is applied by a pass of its own or, fused, inside AdamW's kernel."""
    def trained(clip_separately: bool):
        torch.manual_seed(0)
        net = _Net()
        optimizer = torch.optim.AdamW(parameter_groups(net, 0.1), lr=1e-2, fused=fused)
        norms = []
        for step in range(3):
            x = torch.randn(8, 4, generator=torch.Generator().manual_seed(step))
            (net.norm(net.proj(x)) * net.rms.weight).pow(2).sum().backward()
            if clip_separately:
                norms.append(float(nn.utils.clip_grad_norm_(
                    [p for g in optimizer.param_groups for p in g["params"]], max_norm)))
                optimizer.step()
            else:
                norms.append(float(clip_and_step(optimizer, max_norm)))
                assert not hasattr(optimizer, "grad_scale")  # a fused step's divisor is not left behind
            optimizer.zero_grad(set_to_none=True)
        return norms, {name: p.detach().clone() for name, p in net.named_parameters()}

    (norms, params), (ref_norms, ref_params) = trained(False), trained(True)
    assert norms == pytest.approx(ref_norms, rel=1e-6)
    assert min(ref_norms) > max_norm or max(ref_norms) < max_norm  # clips every step, or never
    for name, value in params.items():
        torch.testing.assert_close(value, ref_params[name], rtol=1e-5, atol=1e-6, msg=name)


def test_gradient_norm_is_the_global_l2_norm():
    grads = [torch.tensor([3.0]), torch.tensor([[4.0, 12.0]])]
    assert float(gradient_norm(grads)) == pytest.approx(13.0)
