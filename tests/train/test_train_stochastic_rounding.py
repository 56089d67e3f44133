"""Stochastic rounding to bf16: always one of the two bf16 neighbours, unbiased, deterministic in its
key, and independent of (and invisible to) torch's random generators."""

from __future__ import annotations

import pytest
import torch

from groot.train.stochastic_rounding import hash_key, random_bits16, stochastic_round

SAMPLES = 200_000


def _neighbours(value: float) -> tuple[float, float]:
    """The bf16 values just below and just above `value` (by magnitude-truncating its fp32 pattern)."""
    pattern = torch.tensor([value], dtype=torch.float32).view(torch.int32)
    down = (pattern & ~0xFFFF).view(torch.float32)
    up = ((pattern & ~0xFFFF) + 0x10000).view(torch.float32)
    return sorted((down.item(), up.item()))


@pytest.mark.parametrize("value", [1.0 + 2**-10, 1.0 + 3 * 2**-12, -3.3e-5, 7.77e12, -0.1, 1.3 * 2.0**-130])
def test_rounding_returns_a_neighbour_and_is_unbiased(value):
    x = torch.full((SAMPLES,), value, dtype=torch.float32)
    rounded = stochastic_round(x, hash_key(7, 3)).float()
    low, high = _neighbours(value)
    assert low < value < high
    assert set(rounded.unique().tolist()) == {low, high}
    # the fraction rounded up is Binomial(SAMPLES, p): its mean is within 5 standard deviations of value
    p = (value - low) / (high - low)
    tolerance = 5 * (high - low) * (p * (1 - p) / SAMPLES) ** 0.5
    assert rounded.double().mean().item() == pytest.approx(value, abs=tolerance)


def test_representable_values_and_non_finite_values_are_kept():
    exact = torch.tensor([0.0, -0.0, 1.0, -2.5, 2.0**127, float("inf"), float("-inf")])
    assert torch.equal(stochastic_round(exact, 1).float(), exact)
    nans = torch.full((1000,), float("nan")).view(torch.int32)
    nans[::2] = -1  # the all-ones pattern: a NaN whose low bits would carry into the sign
    assert stochastic_round(nans.view(torch.float32), 5).isnan().all()


def test_bits_are_a_function_of_the_key_only_and_leave_torch_generators_alone():
    state = torch.get_rng_state()
    a = random_bits16(10_000, hash_key(1, 2, 3), torch.device("cpu"))
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(a, random_bits16(10_000, hash_key(1, 2, 3), torch.device("cpu")))
    assert torch.equal(a, random_bits16(10_000, hash_key(torch.tensor(1), 2, 3), torch.device("cpu")))
    b = random_bits16(10_000, hash_key(1, 2, 4), torch.device("cpu"))
    assert (a == b).float().mean() < 0.01  # another key: unrelated bits
    assert a.min() >= 0 and a.max() < 2**16
    counts = torch.bincount(a >> 12, minlength=16).float()  # top 4 bits roughly uniform
    assert (counts / counts.mean() - 1).abs().max() < 0.1
