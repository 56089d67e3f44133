"""Where the first NaN or infinity of an array sits: the one check behind every "expected finite" error."""

from __future__ import annotations

import numpy as np


def first_nonfinite(values: np.ndarray) -> tuple[int, ...] | None:
    """Index of the first NaN / +-inf of `values` in C order; None when every value is finite (always for
    integer and boolean arrays)."""
    values = np.asarray(values)
    if values.dtype.kind not in "fc":
        return None
    finite = np.isfinite(values)
    if finite.all():
        return None
    return tuple(int(i) for i in np.unravel_index(int(np.argmin(finite)), values.shape))
