"""Where the first NaN or infinity of an array sits, and the check that keeps them out of robot actions."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from groot.errors import NonFiniteError


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


def check_finite_actions(actions: Mapping[str, Any]) -> None:
    """Raise NonFiniteError naming the first action key with a NaN / inf (a robot must never get one)."""
    for key, value in actions.items():
        values = np.asarray(value)
        bad = first_nonfinite(values)
        if bad is not None:
            raise NonFiniteError(f"{key}: expected finite actions, found {values[bad]} at index {list(bad)}; "
                                 "the model produced a non-finite action chunk and it was withheld")
