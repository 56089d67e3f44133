"""N1.6 native-resolution images: the size rule of the Eagle 3 processor and the resize to it.

The N1.6 backbone takes each image at its own size as long as both sides are multiples of
patch x pixel_unshuffle (28), and gives H * W / 28^2 tokens per image (N1.6 spec 2.3). The original's
collator (`processing_eagle3_vl.py`, NVIDIA/Isaac-GR00T @ 97187792) brings every image to such a size
with `smart_resize` (N1.6 spec 4.3) and a PIL resize with PIL's default filter (bicubic):

    h' = min(max(f, round(h / f) f), 7000), w' likewise      (Python round: halves go to even)
    h' w' > 4096 f^2: beta = sqrt(h' w' / (4096 f^2)), h' = floor(h' / beta / f) f, w' likewise
    h' w' < 4 f^2:    beta = sqrt(4 f^2 / (h w)),        h' = ceil(h beta / f) f,   w' likewise

e.g. 256 x 256 -> 252 x 252, 256 x 340 -> 252 x 336; a side ratio above 200 is refused.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from groot.errors import ObservationError

MAX_SIDE = 7000
MAX_RATIO = 200


def smart_resize(height: int, width: int, factor: int = 28, min_tokens: int = 4,
                 max_tokens: int = 4096) -> tuple[int, int]:
    """(height, width) -> the nearest (h', w') with both sides multiples of `factor` and
    min_tokens <= h' w' / factor^2 <= max_tokens, keeping the aspect ratio as well as it can."""
    if min(height, width) <= 0 or max(height, width) / min(height, width) > MAX_RATIO:
        raise ObservationError(f"image of {height} x {width} pixels: expected positive sides with a ratio of "
                               f"at most {MAX_RATIO}")
    min_pixels, max_pixels = min_tokens * factor**2, max_tokens * factor**2
    h_bar = min(max(factor, round(height / factor) * factor), MAX_SIDE)
    w_bar = min(max(factor, round(width / factor) * factor), MAX_SIDE)
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt(h_bar * w_bar / max_pixels)
        h_bar = math.floor(h_bar / beta / factor) * factor
        w_bar = math.floor(w_bar / beta / factor) * factor
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return h_bar, w_bar


def resize_to_grid(images: torch.Tensor, factor: int = 28) -> torch.Tensor:
    """uint8 [..., H, W, 3] -> uint8 [..., H', W', 3] at `smart_resize(H, W, factor)`; returned as is
    when that is its size (sides multiples of `factor`, 4 to 4096 tokens). Resized as PIL resizes uint8
    images with its bicubic filter: one antialiased bicubic pass per axis (PyTorch's kernel is PIL's,
    a = -0.5), each rounded to uint8; the width pass first unless it is the only one that enlarges.
    Against Pillow 13 on random images: under 0.5 % of the values differ, by 1 (by 2 at most when
    2000 x 2000 shrinks to 1792 x 1792)."""
    height, width = images.shape[-3:-1]
    size = smart_resize(height, width, factor)
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
