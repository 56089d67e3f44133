"""Image operations shared by the training transforms, the model processor and the GPU fast path.

All functions run on any device, so the same code crops and resizes on the CPU in DataLoader workers
and on the GPU at inference time. The original N1.5 chain, for every camera size (every data config in
NVIDIA/Isaac-GR00T @ 5e3ef5ef `gr00t/experiment/data_config.py`, transforms in
`gr00t/data/transform/video.py`):

    uint8 -> /255 -> crop int(0.95 H) x int(0.95 W) (random in training, centred in eval)
    -> resize to 224 x 224, bilinear, antialiased (torchvision, float32) -> [colour jitter, training]
    -> x255 and truncate to uint8 -> Eagle image processor: (x - 127.5) / 127.5 in float32

The Eagle processor's own bicubic resize never acts: every frame reaches it already 224 x 224.
`crop_resize` is the geometric part (uint8 -> uint8), `to_model_pixels` the processor's normalisation,
`model_pixels` both; the training transforms, `GrootProcessor` and the inference engine call these.
"""

from __future__ import annotations

from collections.abc import Callable

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


def float_to_uint8(images: torch.Tensor) -> torch.Tensor:
    """float [..., C, H, W] in [0, 1] -> uint8 [..., H, W, C], truncating like the original."""
    return (images * 255.0).clamp(0, 255).to(torch.uint8).movedim(-3, -1)


def to_model_pixels(images: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """uint8 [..., H, W, C] -> model pixels [..., C, H, W] in [-1, 1]: the Eagle processor's fused
    rescale and normalisation (mean = std = 0.5 at scale 1/255), (x - 127.5) / 127.5 in float32, then
    cast to `dtype`."""
    return ((images.movedim(-1, -3).to(torch.float32) - 127.5) / 127.5).to(dtype)


def crop_resize(images: torch.Tensor, scale: float | None, size: int, random: bool = False,
                generator: torch.Generator | None = None,
                adjust: Callable[[torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
    """uint8 [..., H, W, C] -> uint8 [..., S, S, C]: crop `scale` of each side (None: no crop; one offset
    for the whole stack), bilinear antialiased resize in float32 (skipped at S x S), `adjust` (float
    [..., C, S, S] in [0, 1] -> same; the training colour jitter) and truncation to uint8."""
    x = images.movedim(-1, -3)
    if scale is not None:
        x = crop(x, scale, random=random, generator=generator)
    x = resize(x.to(torch.float32) / 255.0, size)
    if adjust is not None:
        x = adjust(x)
    return float_to_uint8(x)


def model_pixels(images: torch.Tensor, size: int, crop_scale: float | None = None,
                 dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """uint8 [..., H, W, 3] -> model pixels [..., 3, S, S] in [-1, 1]: the eval chain of the original
    (`crop_resize` without jitter, then `to_model_pixels`). `crop_scale` None: frames that already are
    the transformed view (resized only when not S x S)."""
    return to_model_pixels(crop_resize(images, crop_scale, size), dtype)
