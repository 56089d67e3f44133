"""`StochasticRoundingAdamW`: a bf16 step equals torch's fp32 AdamW step up to bf16 rounding, updates far
below bf16 resolution still move weights in expectation, clipping through `grad_scale` equals clipping
the gradients, and a state saved and loaded through safetensors continues bit-identically."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_optimizer_state_dict,
    set_optimizer_state_dict,
)

from groot.train.bf16_adamw import StochasticRoundingAdamW
from groot.train.checkpointing import load_optimizer_state, save_optimizer_state
from groot.train.optim import ADAM_BETAS, ADAM_EPS, build_optimizer, clip_and_step, parameter_groups


def _bf16_spacing(value: torch.Tensor) -> torch.Tensor:
    """Distance between the bf16 neighbours around each value (2^(exponent - 7))."""
    return torch.exp2(torch.floor(torch.log2(value.abs().clamp_min(1e-30))) - 7)


def _pair(weight_decay: float, seed: int = 0):
    """A bf16 parameter for the SR optimizer and an fp32 copy (same values) for torch's AdamW."""
    torch.manual_seed(seed)
    start = torch.randn(64, 33).bfloat16()
    ours = nn.Parameter(start.clone())
    reference = nn.Parameter(start.float())
    sr = StochasticRoundingAdamW([ours], lr=1e-2, betas=ADAM_BETAS, eps=ADAM_EPS, weight_decay=weight_decay,
                                 seed=seed)
    fp32 = torch.optim.AdamW([reference], lr=1e-2, betas=ADAM_BETAS, eps=ADAM_EPS, weight_decay=weight_decay)
    return ours, sr, reference, fp32


@pytest.mark.parametrize("weight_decay", [0.0, 0.1])
def test_one_step_is_a_bf16_neighbour_of_the_fp32_adamw_step(weight_decay):
    ours, sr, reference, fp32 = _pair(weight_decay)
    grad = torch.randn(ours.shape)
    ours.grad, reference.grad = grad.bfloat16(), grad.bfloat16().float()
    sr.step()
    fp32.step()
    distance = (ours.detach().float() - reference.detach()).abs()
    assert (distance <= _bf16_spacing(reference.detach())).all()
    assert not torch.equal(ours.detach().float(), reference.detach().bfloat16().float())  # rounding varies
    for key in ("exp_avg", "exp_avg_sq"):
        theirs = fp32.state[reference][key]
        assert sr.state[ours][key].dtype == torch.bfloat16
        assert ((sr.state[ours][key].float() - theirs).abs() <= _bf16_spacing(theirs)).all(), key
    assert sr.state[ours]["step"].item() == 1


def test_many_steps_track_the_fp32_adamw_trajectory():
    ours, sr, reference, fp32 = _pair(0.01, seed=1)
    for _ in range(20):
        grad = torch.randn(ours.shape)
        ours.grad, reference.grad = grad.bfloat16(), grad.bfloat16().float()
        sr.step()
        fp32.step()
    difference = ours.detach().float() - reference.detach()
    # rounding errors add up as a random walk: ~sqrt(20 / 6) bf16 spacings after 20 steps, no drift
    assert (difference.abs() / _bf16_spacing(reference.detach())).median() < 2.0
    assert difference.mean().abs() < 0.15 * difference.abs().mean()


def test_updates_far_below_bf16_resolution_move_weights_in_expectation():
    """Adam steps of 1e-4 on weights of 1.0 (bf16 spacing there: 2^-8 below, 2^-7 above): rounding to
    nearest keeps every weight at 1.0; stochastic rounding moves the mean by the sum of the steps."""
    weight = nn.Parameter(torch.ones(20_000, dtype=torch.bfloat16))
    optimizer = StochasticRoundingAdamW([weight], lr=1e-4, betas=ADAM_BETAS, eps=ADAM_EPS)
    steps = 100
    for _ in range(steps):
        weight.grad = torch.ones_like(weight)  # constant gradient: each Adam step is lr
        optimizer.step()
    assert torch.equal((torch.ones(1) - 1e-4).bfloat16(), torch.ones(1).bfloat16())  # nearest: no move
    assert weight.detach().double().mean().item() == pytest.approx(1 - steps * 1e-4, abs=2e-4)


def test_grad_scale_from_clipping_equals_clipped_gradients():
    ours, sr, reference, fp32 = _pair(0.0)
    grad = 10 * torch.randn(ours.shape)
    ours.grad, reference.grad = grad.bfloat16(), grad.bfloat16().float()
    norm = clip_and_step(sr, max_norm=1.0)
    assert norm.item() == pytest.approx(reference.grad.norm().item(), rel=1e-5)
    torch.nn.utils.clip_grad_norm_([reference], 1.0)
    fp32.step()
    assert ((ours.detach().float() - reference.detach()).abs() <= _bf16_spacing(reference.detach())).all()
    assert not hasattr(sr, "grad_scale") or sr.grad_scale is None


class _Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(8, 16)
        self.norm = nn.LayerNorm(16)
        self.out = nn.Linear(16, 2)


def _net_and_optimizer():
    torch.manual_seed(0)
    net = _Net().bfloat16()
    return net, build_optimizer(parameter_groups(net, 0.1), 1e-3, trainable_dtype="bf16", seed=5)


def _steps(net, optimizer, first: int, count: int) -> None:
    for step in range(first, first + count):
        generator = torch.Generator().manual_seed(step)
        inputs = torch.randn(4, 8, generator=generator).bfloat16()
        net.out(net.norm(net.proj(inputs))).float().square().mean().backward()
        clip_and_step(optimizer, 1.0)
        optimizer.zero_grad(set_to_none=True)


def test_saved_and_loaded_state_continues_bit_identically(tmp_path):
    net, optimizer = _net_and_optimizer()
    assert isinstance(optimizer, StochasticRoundingAdamW)
    _steps(net, optimizer, 0, 3)
    saved_weights = {k: v.clone() for k, v in net.state_dict().items()}
    save_optimizer_state(get_optimizer_state_dict(net, optimizer, options=StateDictOptions(
        full_state_dict=True, cpu_offload=True)), tmp_path)
    rng = torch.get_rng_state()
    _steps(net, optimizer, 3, 3)
    assert torch.equal(torch.get_rng_state(), rng)  # rounding draws nothing from torch's generator
    straight = net.state_dict()

    resumed, fresh_optimizer = _net_and_optimizer()
    resumed.load_state_dict(saved_weights)
    set_optimizer_state_dict(resumed, fresh_optimizer, load_optimizer_state(tmp_path),
                             options=StateDictOptions(full_state_dict=True))
    _steps(resumed, fresh_optimizer, 3, 3)
    for name, value in straight.items():
        assert torch.equal(resumed.state_dict()[name], value), name


def test_parameters_must_be_bf16():
    with pytest.raises(TypeError, match="bf16"):
        StochasticRoundingAdamW([nn.Parameter(torch.zeros(2))], lr=1e-3, betas=ADAM_BETAS, eps=ADAM_EPS)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_recorded_bf16_steps_equal_plain_steps():
    """The SR step has no host synchronisation: `GraphedTrainStep` records and replays it (the step
    counts, bias corrections and rounding bits all on the device) with the results of plain steps."""
    import functools

    from groot.model.gr00t_n15 import GR00TN15
    from groot.model.synthetic_batch import synthetic_batch
    from groot.train.cuda_graph_step import GraphedTrainStep
    from groot.train.optim import WarmupCosineSchedule
    from groot.train.precision import cast_frozen_to_bf16, cast_trainable_to_bf16
    from groot.train.step import micro_batch, train_step

    cuda = torch.device("cuda")

    def run(graphed: bool):
        torch.manual_seed(0)
        model = GR00TN15.from_preset("tiny")
        model.set_trainable(tune_llm=False, tune_visual=False, tune_projector=True, tune_diffusion_model=True)
        cast_frozen_to_bf16(model)
        cast_trainable_to_bf16(model)
        model.to(cuda).train()
        optimizer = build_optimizer(parameter_groups(model, 0.1), 1e-3, trainable_dtype="bf16", seed=3)
        schedule = WarmupCosineSchedule(optimizer, warmup_steps=2, total_steps=8)
        step = functools.partial(train_step, model, optimizer, max_grad_norm=0.1, bf16=True)
        if graphed:
            step = GraphedTrainStep(step, optimizer, warmup=2)
        batch = synthetic_batch(model.config, batch=4, text_tokens=3, seed=1).to(cuda)
        torch.manual_seed(3)
        losses = []
        for _ in range(6):  # warmup, warmup, record, replay x3
            losses.append(step([micro_batch(model, batch, cuda)])[0])
            schedule.step()
        return torch.stack(losses).tolist(), {n: p.detach().clone() for n, p in model.named_parameters()}

    plain_losses, plain_weights = run(False)
    losses, weights = run(True)
    assert losses == plain_losses
    for name, value in plain_weights.items():
        assert torch.equal(weights[name], value), name
