"""Image preprocessing on the inference device: raw uint8 camera frames -> model pixels.

The same `groot.data.image_ops` functions as the CPU transform path (centre crop -> bilinear antialiased
resize -> uint8 truncation -> [-1, 1]), run where the frames already are, so the numbers match the CPU
path exactly on the CPU (on CUDA up to the interpolation kernel's rounding at the uint8 truncation).

`PinnedStaging` packs a list of per-sample arrays straight into reusable page-locked host memory, so the
host -> device copy is asynchronous and the CPU never copies the frames twice.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from groot.data import image_ops


def preprocess_images(images: torch.Tensor, image_size: int, crop_scale: float | None,
                      dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """uint8 [..., H, W, 3] -> model pixels [..., 3, S, S] in [-1, 1], computed in float32 then cast.

    `crop_scale` None means the frames are already the transformed view (only resized if not S x S)."""
    if crop_scale is not None:
        images = image_ops.crop_resize(images, crop_scale, image_size)
    elif tuple(images.shape[-3:-1]) != (image_size, image_size):
        images = image_ops.float_to_uint8(image_ops.resize(image_ops.uint8_to_float(images), image_size))
    return image_ops.to_model_pixels(images).to(dtype)


class PinnedStaging:
    """Reusable page-locked host buffers, one per (shape, dtype), for asynchronous uploads.

    A buffer is reused only after the copy that last read it has finished (a CUDA event per buffer),
    so a caller may issue the next upload while the device still works on the previous batch."""

    def __init__(self, device: torch.device):
        self.device = device
        self._buffers: dict[tuple, tuple[torch.Tensor, torch.cuda.Event | None]] = {}

    def upload_into(self, target: torch.Tensor, rows: Sequence[np.ndarray]) -> torch.Tensor:
        """Copy n per-sample arrays of one shape [...] into `target[:n]` ([n, ...]); the rows are stacked
        straight into a reused host buffer (page-locked, copied without blocking, on CUDA) and cast to
        the target's dtype on its device. -> target[:n]"""
        n = len(rows)
        pinned = target.device.type == "cuda"
        host_dtype = _torch_dtype(rows[0])
        key = ((n, *target.shape[1:]), host_dtype)
        buffer, done = self._buffers.get(key, (None, None))
        if buffer is None:
            buffer = torch.empty(key[0], dtype=host_dtype, pin_memory=pinned)
        elif done is not None:
            done.synchronize()  # the previous upload from this buffer has left the host
        np.stack([np.asarray(r) for r in rows], out=buffer.numpy())
        target[:n].copy_(buffer, non_blocking=pinned)
        event = None
        if pinned:
            event = torch.cuda.Event()
            event.record()
        self._buffers[key] = (buffer, event)
        return target[:n]

    def upload(self, rows: Sequence[np.ndarray]) -> torch.Tensor:
        """n per-sample arrays of one shape and dtype [...] -> a new device tensor [n, ...]"""
        target = torch.empty((len(rows), *np.shape(rows[0])), dtype=_torch_dtype(rows[0]), device=self.device)
        return self.upload_into(target, rows)


def _torch_dtype(array) -> torch.dtype:
    return torch.from_numpy(np.empty(0, dtype=np.asarray(array).dtype)).dtype
