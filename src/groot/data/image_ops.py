"""Image operations shared by the training transforms, the model processor and the GPU fast path.

All functions take channel-first tensors `[..., C, H, W]` on any device, so the same code crops and
resizes on the CPU in DataLoader workers and on the GPU at inference time.
The official chain (spec 7.1, 2.5): uint8 -> /255 -> crop 95 % (random in training, centre at eval)
-> bilinear antialiased resize -> x255 and truncate to uint8 -> /255 -> (x - 0.5) / 0.5.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def crop_size(height: int, width: int, scale: float) -> tuple[int, int]:
    return int(height * scale), int(width * scale)


def crop(images: torch.Tensor, scale: float, random: bool = False,
         generator: torch.Generator | None = None) -> torch.Tensor:
    """Crop `scale` of each side; one offset for the whole stack (all views and time steps).
    images: [..., C, H, W] -> [..., C, int(scale*H), int(scale*W)]"""
    h, w = images.shape[-2:]
    ch, cw = crop_size(h, w, scale)
    if random:
        top = int(torch.randint(0, h - ch + 1, (1,), generator=generator))
        left = int(torch.randint(0, w - cw + 1, (1,), generator=generator))
    else:  # torchvision's centre-crop rounding
        top, left = int(round((h - ch) / 2.0)), int(round((w - cw) / 2.0))
    return images[..., top:top + ch, left:left + cw]


def resize(images: torch.Tensor, size: int | tuple[int, int]) -> torch.Tensor:
    """Bilinear, antialiased resize of float images. images: [..., C, H, W] -> [..., C, S, S]"""
    out_hw = (size, size) if isinstance(size, int) else tuple(size)
    if tuple(images.shape[-2:]) == out_hw:
        return images
    lead = images.shape[:-3]
    flat = images.reshape(-1, *images.shape[-3:])
    out = F.interpolate(flat, size=out_hw, mode="bilinear", align_corners=False, antialias=True)
    return out.reshape(*lead, *out.shape[-3:])


def uint8_to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 [..., H, W, C] -> float32 [..., C, H, W] in [0, 1]"""
    return images.movedim(-1, -3).to(torch.float32) / 255.0


def float_to_uint8(images: torch.Tensor) -> torch.Tensor:
    """float [..., C, H, W] in [0, 1] -> uint8 [..., H, W, C], truncating like the original."""
    return (images * 255.0).clamp(0, 255).to(torch.uint8).movedim(-3, -1)


def to_model_pixels(images: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """uint8 [..., H, W, C] -> model pixels [..., C, H, W] in [-1, 1] (mean = std = 0.5)."""
    return (images.movedim(-1, -3).to(dtype) / 255.0 - 0.5) / 0.5


def crop_resize(images: torch.Tensor, scale: float, size: int, random: bool = False,
                generator: torch.Generator | None = None) -> torch.Tensor:
    """uint8 [..., H, W, C] -> uint8 [..., S, S, C]: the eval/train geometric part of the chain."""
    x = uint8_to_float(images)
    x = crop(x, scale, random=random, generator=generator)
    return float_to_uint8(resize(x, size))
