"""N1.6 native-resolution images: the size rule of the Eagle 3 processor and the resize to it.

The N1.6 backbone takes each image at its own size as long as both sides are multiples of
patch x pixel_unshuffle (28), and gives H * W / 28^2 tokens per image (N1.6 spec 2.3). The original's
collator (`processing_eagle3_vl.py`, NVIDIA/Isaac-GR00T @ 97187792) brings every image to such a size
with `smart_resize` (N1.6 spec 4.3) and a PIL resize with PIL's default filter (bicubic):

    h' = max(f, round(h / f) f), w' likewise                 (Python round: halves go to even)
    h' w' > 4096 f^2: beta = sqrt(h w / (4096 f^2)),   h' = floor(h / beta / f) f,   w' likewise
    h' w' < 4 f^2:    beta = sqrt(4 f^2 / (h w)),        h' = ceil(h beta / f) f,   w' likewise

e.g. 256 x 256 -> 252 x 252, 256 x 340 -> 252 x 336; a side ratio above 200 is refused.
"""

from __future__ import annotations

import torch

from groot.data.image_ops import smart_resize_images, smart_resize_size
from groot.errors import ObservationError

MAX_RATIO = 200


def smart_resize(height: int, width: int, factor: int = 28) -> tuple[int, int]:
    """(height, width) -> the nearest (h', w') with both sides multiples of `factor` and 4 to 4096
    tokens of factor^2 pixels, keeping the aspect ratio as well as it can (`image_ops.smart_resize_size`,
    the one implementation of the rule); a side ratio above 200 raises ObservationError."""
    if min(height, width) <= 0 or max(height, width) / min(height, width) > MAX_RATIO:
        raise ObservationError(f"image of {height} x {width} pixels: expected positive sides with a ratio of "
                               f"at most {MAX_RATIO}")
    return smart_resize_size(height, width, factor)


def resize_to_grid(images: torch.Tensor, factor: int = 28) -> torch.Tensor:
    """uint8 [..., H, W, 3] -> uint8 [..., H', W', 3] at `smart_resize(H, W, factor)`
    (`image_ops.smart_resize_images`); a side ratio above 200 raises ObservationError."""
    smart_resize(*images.shape[-3:-1], factor)
    return smart_resize_images(images, factor)
