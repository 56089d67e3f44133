"""Packing of a call's inputs for the inference device.

`PackedUpload` packs the per-sample arrays of a call straight into one reusable page-locked host buffer,
so they reach the device in one asynchronous copy and the CPU never copies the frames twice. The frames
are turned into model pixels on the device by `groot.data.image_ops.model_pixels`, the function of the
CPU path.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch


class PackedUpload:
    """Fixed-shape fields packed back to back in one page-locked host buffer and one device buffer, so
    a call's per-sample inputs (camera frames, state) reach the device in a single asynchronous copy.
    On the CPU the host buffer is the device buffer and `send` does nothing.

    The host buffer is rewritten only after the copy that last read it has finished (a CUDA event), so
    a caller may stage the next call while the device still works on the previous one."""

    ALIGNMENT = 16  # bytes; every field starts aligned for any dtype view

    def __init__(self, fields: dict[str, tuple[tuple[int, ...], torch.dtype]], device: torch.device):
        self.device = device
        layout, total = {}, 0
        for name, (shape, dtype) in fields.items():
            nbytes = math.prod(shape) * torch.empty(0, dtype=dtype).element_size()
            layout[name] = (total, nbytes, shape, dtype)
            total += -(-nbytes // self.ALIGNMENT) * self.ALIGNMENT
        pinned = device.type == "cuda"
        self.host = torch.zeros(total, dtype=torch.uint8, pin_memory=pinned)
        self.device_buffer = torch.zeros(total, dtype=torch.uint8, device=device) if pinned else self.host
        self.fields: dict[str, torch.Tensor] = {}  # the device views, [*shape] of their dtype
        self._host_arrays: dict[str, np.ndarray] = {}
        host = self.host.numpy()
        for name, (start, nbytes, shape, dtype) in layout.items():
            self.fields[name] = self.device_buffer[start:start + nbytes].view(dtype).view(shape)
            self._host_arrays[name] = host[start:start + nbytes].view(_numpy_dtype(dtype)).reshape(shape)
        self._copied: torch.cuda.Event | None = None

    def write(self, name: str, rows: Sequence[np.ndarray]) -> None:
        """rows[i] (one per sample, the field's row shape) -> host row i of field `name`; later rows
        keep what they held."""
        if self._copied is not None:
            self._copied.synchronize()  # the last copy has read the host buffer
            self._copied = None
        np.stack([np.asarray(r) for r in rows], out=self._host_arrays[name][:len(rows)], casting="same_kind")

    def send(self) -> None:
        """Host buffer -> device buffer, without blocking the host (CUDA)."""
        if self.device_buffer is self.host:
            return
        self.device_buffer.copy_(self.host, non_blocking=True)
        self._copied = torch.cuda.Event()
        self._copied.record()


def _numpy_dtype(dtype: torch.dtype) -> np.dtype:
    return torch.empty(0, dtype=dtype).numpy().dtype
