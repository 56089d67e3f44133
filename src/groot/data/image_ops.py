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

N1.6 keeps each camera's aspect ratio (`native_crop_resize`, spec 4.2 / 4.3):

    uint8 -> shortest edge to E (albumentations SmallestMaxSize, cv2 INTER_AREA)
    -> crop int(f H) x int(f W) (centred at ((H - h) // 2, (W - w) // 2) in eval, random in training)
    -> shortest edge to E again -> [colour jitter, training]
    -> each side to max(m, round(side / m) m) (Qwen-VL smart_resize, PIL bicubic; m = patch x unshuffle)

e.g. E = 256, f = 0.95, m = 28: 256 x 256 -> 243 x 243 -> 256 x 256 -> 252 x 252 (81 tokens of 28 x 28 px)
and (H x W) 480 x 640 -> 256 x 341 -> 243 x 323 -> 256 x 340 -> 252 x 336 (108 tokens).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

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


# ---- N1.6: native aspect ratio ------------------------------------------------------------------
SMART_RESIZE_MIN_UNITS = 4  # smart_resize bounds, in units of multiple^2 pixels (4 and 4096 x 28^2)
SMART_RESIZE_MAX_UNITS = 4096


def shortest_edge_size(height: int, width: int, edge: int) -> tuple[int, int]:
    """(H, W) scaled so that the shorter side is `edge`, each side rounded as albumentations'
    SmallestMaxSize does: round(side * (edge / shortest)) (Python rounding)."""
    scale = edge / min(height, width)
    if scale == 1.0:
        return height, width
    return round(height * scale), round(width * scale)


def smart_resize_size(height: int, width: int, multiple: int) -> tuple[int, int]:
    """(H, W) with each side max(multiple, round(side / multiple) * multiple); when the area leaves
    [4, 4096] x multiple^2 both sides are scaled to fit (floored / ceiled to the multiple)."""
    h = max(multiple, round(height / multiple) * multiple)
    w = max(multiple, round(width / multiple) * multiple)
    unit = multiple * multiple
    if h * w > SMART_RESIZE_MAX_UNITS * unit:
        beta = math.sqrt(height * width / (SMART_RESIZE_MAX_UNITS * unit))
        h = max(multiple, math.floor(height / beta / multiple) * multiple)
        w = max(multiple, math.floor(width / beta / multiple) * multiple)
    elif h * w < SMART_RESIZE_MIN_UNITS * unit:
        beta = math.sqrt(SMART_RESIZE_MIN_UNITS * unit / (height * width))
        h = math.ceil(height * beta / multiple) * multiple
        w = math.ceil(width * beta / multiple) * multiple
    return h, w


def smart_resize_images(images: torch.Tensor, multiple: int) -> torch.Tensor:
    """uint8 [..., H, W, 3] -> uint8 [..., H', W', 3] at `smart_resize_size(H, W, multiple)`; returned
    as is when that is its size. Resized as PIL resizes uint8 images with its bicubic filter: one
    antialiased bicubic pass per axis (PyTorch's kernel is PIL's, a = -0.5), each rounded to uint8; the
    width pass first unless it is the only one that enlarges. Against Pillow 13 on random images: under
    0.5 % of the values differ, by 1 (by 2 at most when 2000 x 2000 shrinks to 1792 x 1792)."""
    height, width = images.shape[-3:-1]
    size = smart_resize_size(height, width, multiple)
    if size == (height, width):
        return images
    lead = images.shape[:-3]
    x = images.reshape(-1, height, width, images.shape[-1]).movedim(-1, 1).to(torch.float32)
    width_first = not (size[1] > width and size[0] < height)
    for axis in ((1, 0) if width_first else (0, 1)):
        target = (x.shape[-2], size[1]) if axis == 1 else (size[0], x.shape[-1])
        if target != tuple(x.shape[-2:]):
            x = F.interpolate(x, size=target, mode="bicubic", align_corners=False, antialias=True)
            x = torch.floor(x + 0.5).clamp(0, 255)
    out = x.to(torch.uint8).movedim(1, -1)
    return out.reshape(*lead, *out.shape[1:])


def native_size(height: int, width: int, edge: int, crop_fraction: float | None,
                multiple: int) -> tuple[int, int]:
    """Output (H, W) of `native_crop_resize` for a frame of (height, width), without touching pixels."""
    h, w = shortest_edge_size(height, width, edge)
    if crop_fraction is not None:
        h, w = shortest_edge_size(*crop_size(h, w, crop_fraction), edge)
    return smart_resize_size(h, w, multiple)


def fractional_crop(images: torch.Tensor, fraction: float, random: bool = False,
                    generator: torch.Generator | None = None) -> torch.Tensor:
    """Keep int(fraction*H) x int(fraction*W); one offset for the whole stack, uniform in training,
    ((H - h) // 2, (W - w) // 2) otherwise (albumentations' FractionalCenterCrop).
    images: [..., C, H, W] -> [..., C, h, w]"""
    height, width = images.shape[-2:]
    h, w = crop_size(height, width, fraction)
    if random:
        top = int(torch.randint(0, height - h + 1, (1,), generator=generator))
        left = int(torch.randint(0, width - w + 1, (1,), generator=generator))
    else:
        top, left = (height - h) // 2, (width - w) // 2
    return images[..., top:top + h, left:left + w]


def _resize_rounded(images: torch.Tensor, size: tuple[int, int], mode: str) -> torch.Tensor:
    """float [..., C, H, W] in [0, 255] -> [..., C, h, w], antialiased `mode`, clamped and rounded to
    whole levels as a uint8 image library stores its result."""
    if tuple(images.shape[-2:]) == size:
        return images
    lead = images.shape[:-3]
    flat = images.reshape(-1, *images.shape[-3:])
    out = F.interpolate(flat, size=size, mode=mode, align_corners=False, antialias=True)
    return out.clamp_(0, 255).round_().reshape(*lead, *out.shape[-3:])


def native_crop_resize(images: torch.Tensor, edge: int, crop_fraction: float | None, multiple: int,
                       random: bool = False, generator: torch.Generator | None = None,
                       adjust: Callable[[torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
    """uint8 [..., H, W, 3] -> uint8 [..., H', W', 3], (H', W') = `native_size(H, W, ...)`: the N1.6
    chain of the module docstring (`crop_fraction` None: no crop), on the images' device.

    The original resizes with cv2 INTER_AREA (the two shortest-edge steps) and PIL bicubic (the
    smart_resize step) on uint8 images. Here the shortest-edge steps use torch's antialiased bilinear
    interpolation (a triangle-filter average over the source footprint when shrinking, close to
    INTER_AREA's box average) and the last step `smart_resize_images` (PIL's bicubic, axis by axis); every
    step rounds to whole uint8 levels like those libraries. Measured against cv2 4.x INTER_AREA + PIL
    bicubic on a smooth 480 x 640 image: mean |difference| 0.97 uint8 levels, at most 7 (per step vs
    INTER_AREA: 0.87 shrinking, 0.4 enlarging; torch's `area` mode gives 2.9 / 6.4, hence not used).
    `adjust` (float [..., 3, h, w] in [0, 1] -> same; the training colour jitter) runs after the second
    shortest-edge resize, as the original's ColorJitter does."""
    x = images.movedim(-1, -3).to(torch.float32)
    x = _resize_rounded(x, shortest_edge_size(*x.shape[-2:], edge), "bilinear")
    if crop_fraction is not None:
        x = fractional_crop(x, crop_fraction, random=random, generator=generator)
        x = _resize_rounded(x, shortest_edge_size(*x.shape[-2:], edge), "bilinear")
    if adjust is not None:
        x = (adjust(x / 255.0) * 255.0).clamp_(0, 255).round_()
    return smart_resize_images(x.to(torch.uint8).movedim(-3, -1), multiple)


IMAGE_RESIZE_MODES = ("square", "shortest_edge")


@dataclass(frozen=True)
class ImageGeometry:
    """A data config's crop and resize, one object for the training transforms and the inference
    engine: "square" (`crop_resize` to size x size, N1.5) or "shortest_edge" (`native_crop_resize` with
    shortest edge `size` and sides multiples of `multiple`, N1.6). `crop_scale` None: no crop."""

    resize: str = "square"
    crop_scale: float | None = 0.95
    size: int = 224
    multiple: int = 1

    def __post_init__(self) -> None:
        if self.resize not in IMAGE_RESIZE_MODES:
            raise ValueError(f"image resize {self.resize!r} is not one of {IMAGE_RESIZE_MODES}")

    def __call__(self, images: torch.Tensor, random: bool = False, generator: torch.Generator | None = None,
                 adjust: Callable[[torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
        """uint8 [..., H, W, 3] -> uint8 [..., H', W', 3], (H', W') = `output_size(H, W)`; crop centred
        unless `random`; `adjust`: the training colour jitter (float [..., 3, h, w] in [0, 1])."""
        if self.resize == "shortest_edge":
            return native_crop_resize(images, self.size, self.crop_scale, self.multiple, random=random,
                                      generator=generator, adjust=adjust)
        return crop_resize(images, self.crop_scale, self.size, random=random, generator=generator,
                           adjust=adjust)

    def output_size(self, height: int, width: int) -> tuple[int, int]:
        """(H', W') of a frame of (height, width), without touching pixels."""
        if self.resize == "shortest_edge":
            return native_size(height, width, self.size, self.crop_scale, self.multiple)
        return self.size, self.size
