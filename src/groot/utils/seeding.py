"""Seeds derived from integers by hashing: the same parts give the same seed in every process, worker
and Python run (unlike `hash()`), and neighbouring parts give unrelated seeds."""

from __future__ import annotations

import hashlib


def hashed_seed(*parts: int, sep: str = ":", bits: int = 64) -> int:
    """The low `bits` bits of the first 8 bytes (little-endian) of sha256 over the parts joined by
    `sep`, e.g. `hashed_seed(seed, epoch, index)` hashes b"<seed>:<epoch>:<index>". 1 <= bits <= 64."""
    if not 1 <= bits <= 64:
        raise ValueError(f"bits must be in [1, 64], found {bits}")
    digest = hashlib.sha256(sep.join(str(int(part)) for part in parts).encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << bits) - 1)
