"""Stochastic rounding of fp32 values to bf16, with random bits from a counter-based hash.

bf16 is fp32 with the low 16 bits of the bit pattern dropped. Adding 16 uniformly random bits to the
fp32 pattern and then clearing the low 16 bits rounds the magnitude up with probability (low bits) /
2^16 and down otherwise: the result is always one of the two bf16 neighbours of the value and equals it
in expectation (unbiased), so updates far below bf16's resolution still move a weight on average.

The random bits are a pure function of (key, element index): `random_bits16(numel, key)` hashes the
element index with the key (an int64 tensor, possibly on the device). No torch generator is read or
advanced, so the model's random streams are untouched, the bits can be recomputed exactly after a resume
from the key alone, and the whole computation is device-side tensor ops (recordable in a CUDA graph).
"""

from __future__ import annotations

import torch

MASK32 = 0xFFFFFFFF
# both < 2^31: a 32-bit value times either fits in int64 (no overflow in tensor arithmetic)
_MULTIPLIER = 0x45D9F3B
_KEY_MULTIPLIER = 0x27D4EB2F


def mix32(x):
    """A bijective 32-bit integer hash (two xor-shift-multiply rounds) of a python int or an int64 tensor
    holding values in [0, 2^32); returns values in [0, 2^32) of the same kind."""
    x = ((x >> 16) ^ x) * _MULTIPLIER & MASK32
    x = ((x >> 16) ^ x) * _MULTIPLIER & MASK32
    return (x >> 16) ^ x


def hash_key(*parts):
    """Combine integers (python ints or int64 tensors, e.g. a step counter on the device) into one
    32-bit key, an int or a tensor; different tuples give unrelated keys."""
    key = 0
    for part in parts:
        key = mix32((key * _KEY_MULTIPLIER + (part & MASK32) + 1) & MASK32)
    return key


def random_bits16(numel: int, key: torch.Tensor | int, device: torch.device) -> torch.Tensor:
    """int32 [numel] of uniform values in [0, 2^16): hash of (element index, key)."""
    index = torch.arange(numel, device=device, dtype=torch.int64)
    return (mix32(mix32(index) ^ key) & 0xFFFF).to(torch.int32)


def stochastic_round_to_bf16(x: torch.Tensor, bits16: torch.Tensor) -> torch.Tensor:
    """fp32 `x` -> bf16 of its shape, rounded up or down with probability given by `bits16` (int32 of
    x's numel, values in [0, 2^16)). Infinities stay; NaNs stay NaN."""
    if x.dtype != torch.float32:
        raise TypeError(f"stochastic_round_to_bf16: expected a float32 tensor, found {x.dtype}")
    pattern = x.contiguous().view(torch.int32).reshape(-1)
    rounded = ((pattern + bits16) & ~0xFFFF).view(torch.float32)
    rounded = torch.where(torch.isnan(x.reshape(-1)), x.reshape(-1), rounded)
    return rounded.to(torch.bfloat16).reshape(x.shape)  # exact: the low 16 bits are zero


def stochastic_round(x: torch.Tensor, key: torch.Tensor | int) -> torch.Tensor:
    """`stochastic_round_to_bf16` with the bits of `random_bits16(x.numel(), key)`."""
    return stochastic_round_to_bf16(x, random_bits16(x.numel(), key, x.device))
