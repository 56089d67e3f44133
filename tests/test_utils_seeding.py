"""hashed_seed: stable across processes, sensitive to every part and its position."""

from __future__ import annotations

import hashlib
import subprocess
import sys

import pytest

from groot.utils.seeding import hashed_seed


def test_the_seed_is_sha256_of_the_joined_parts():
    digest = hashlib.sha256(b"42:3:17").digest()
    assert hashed_seed(42, 3, 17) == int.from_bytes(digest[:8], "little")
    digest = hashlib.sha256(b"3-17-42").digest()
    assert hashed_seed(3, 17, 42, sep="-") == int.from_bytes(digest[:8], "little")


def test_bits_bound_the_seed():
    seeds = [hashed_seed(7, 0, index, bits=63) for index in range(200)]
    assert all(0 <= seed < 2**63 for seed in seeds)
    assert max(seeds) > 2**62  # the top kept bit is used, not just cleared
    assert [s & (2**63 - 1) for s in (hashed_seed(7, 0, i) for i in range(200))] == seeds
    with pytest.raises(ValueError, match="bits"):
        hashed_seed(1, bits=65)


def test_every_part_and_its_order_change_the_seed():
    base = hashed_seed(1, 2, 3)
    assert len({base, hashed_seed(2, 1, 3), hashed_seed(1, 2, 4), hashed_seed(1, 2, 3, sep="-")}) == 4


def test_the_seed_is_the_same_in_another_process():
    code = "from groot.utils.seeding import hashed_seed; print(hashed_seed(5, 6, 7))"
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert int(other.stdout) == hashed_seed(5, 6, 7)
