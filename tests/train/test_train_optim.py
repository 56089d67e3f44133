import math

import pytest
import torch
from torch import nn

from groot.model.action_head import CategorySpecificLinear
from groot.train.optim import (
    ADAM_BETAS,
    WarmupCosineSchedule,
    build_optimizer,
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
