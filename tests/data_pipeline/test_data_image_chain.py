"""The image chain equals golden arrays computed here from the original N1.5's formulas, at any size.

Facts, from NVIDIA/Isaac-GR00T @ 5e3ef5ef9a89b647f11490d749b0049ae2796b94 (unchanged through
4af2b622892f7dcb5aae5a3fb70bcb02dc217b96):
- `gr00t/experiment/data_config.py`: every data config runs VideoToTensor -> VideoCrop(scale=0.95) ->
  VideoResize(224, 224, interpolation="linear") -> VideoColorJitter (training) -> VideoToNumpy, on the
  default torchvision backend, for every camera resolution.
- `gr00t/data/transform/video.py`: VideoToTensor is uint8 / 255 in float32; VideoCrop takes
  (int(H * scale), int(W * scale)), centred in eval (torchvision CenterCrop: offset
  int(round((H - h) / 2))); VideoResize is torchvision Resize, bilinear, antialias=True; VideoToNumpy is
  (x * 255) cast to uint8 (truncation).
- `gr00t/model/backbone/eagle2_hg_model/preprocessor_config.json` + `image_processing_eagle2_5_vl_fast.py`:
  the Eagle processor gets 224 x 224 frames (one tile, its bicubic resize is then the identity) and
  applies the fused rescale + normalisation of transformers' fast processors, (x - 0.5 * 255) / (0.5 * 255)
  in float32.
The antialiased bilinear filter is torchvision's (PIL's): for output index i at scale s = in / out,
centre c = s (i + 0.5), support max(s, 1), weights of input j: triangle((j + 0.5 - c) / max(s, 1)),
normalised; separable over rows and columns.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from groot.data import image_ops
from groot.data.metadata import DatasetMetadata
from groot.data.transforms import VideoTransform
from groot.model.processor import GrootProcessor
from groot.model.tokenizer import ByteTokenizer

SIZE = 224
SCALE = 0.95
# (H, W): square cameras, the common 480 x 640, odd sizes shrunk, enlarged and both at once
CAMERAS = [(256, 256), (480, 640), (97, 131), (200, 150), (225, 225), (235, 236)]


def _filter_matrix(in_size: int, out_size: int) -> np.ndarray:
    """[out, in] float64 weights of the antialiased bilinear (triangle) filter."""
    scale = in_size / out_size
    stretch = max(scale, 1.0)
    weights = np.zeros((out_size, in_size))
    for i in range(out_size):
        centre = scale * (i + 0.5)
        first = max(int(centre - stretch + 0.5), 0)
        last = min(int(centre + stretch + 0.5), in_size)
        taps = np.arange(first, last)
        w = np.clip(1.0 - np.abs((taps + 0.5 - centre) / stretch), 0.0, None)
        weights[i, taps] = w / w.sum()
    return weights


def _golden_uint8(frame: np.ndarray) -> np.ndarray:
    """uint8 [H, W, 3] -> uint8 [224, 224, 3]: centre crop 0.95, filter in float64, truncate."""
    h, w = frame.shape[:2]
    ch, cw = int(h * SCALE), int(w * SCALE)
    top, left = int(round((h - ch) / 2.0)), int(round((w - cw) / 2.0))
    x = frame[top:top + ch, left:left + cw].astype(np.float64) / 255.0
    rows, cols = _filter_matrix(ch, SIZE), _filter_matrix(cw, SIZE)
    out = np.stack([rows @ x[..., c] @ cols.T for c in range(3)], -1)
    return np.floor(out * 255.0).clip(0, 255).astype(np.uint8)


def _golden_pixels(frame_224: np.ndarray) -> np.ndarray:
    """uint8 [224, 224, 3] -> float32 [3, 224, 224], the processor's (x - 127.5) / 127.5."""
    x = frame_224.astype(np.float32).transpose(2, 0, 1)
    return (x - np.float32(127.5)) / np.float32(127.5)


def _frames(h: int, w: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (2, h, w, 3), dtype=np.uint8)


@pytest.mark.parametrize(("h", "w"), CAMERAS)
def test_crop_resize_within_one_level_of_the_golden(h, w):
    frames = _frames(h, w, h * w)
    ours = image_ops.crop_resize(torch.from_numpy(frames), SCALE, SIZE).numpy()
    golden = np.stack([_golden_uint8(f) for f in frames])
    diff = np.abs(ours.astype(np.int16) - golden.astype(np.int16))
    assert ours.shape == (2, SIZE, SIZE, 3)
    assert diff.max() <= 1
    assert (diff == 0).mean() > 0.99  # off by one only where float32 rounding crosses an integer


@pytest.mark.parametrize(("h", "w"), [(256, 256), (480, 640)])
def test_bicubic_would_fail_the_golden(h, w):
    """The golden tells the interpolations apart: the Eagle processor's bicubic is not the chain's."""
    frames = _frames(h, w, 7)
    x = torch.from_numpy(frames).movedim(-1, -3).float() / 255.0
    ch, cw = int(h * SCALE), int(w * SCALE)
    top, left = int(round((h - ch) / 2.0)), int(round((w - cw) / 2.0))
    bicubic = F.interpolate(x[..., top:top + ch, left:left + cw], size=(SIZE, SIZE), mode="bicubic",
                            align_corners=False, antialias=True)
    bicubic = image_ops.float_to_uint8(bicubic).numpy()
    golden = np.stack([_golden_uint8(f) for f in frames])
    assert np.abs(bicubic.astype(np.int16) - golden.astype(np.int16)).max() > 1


@pytest.mark.parametrize(("h", "w"), [(256, 256), (480, 640), (97, 131)])
def test_model_pixels_equal_golden_normalisation(h, w):
    frames = torch.from_numpy(_frames(h, w, 3))
    pixels = image_ops.model_pixels(frames, SIZE, SCALE)
    views = image_ops.crop_resize(frames, SCALE, SIZE).numpy()
    assert pixels.dtype == torch.float32 and pixels.shape == (2, 3, SIZE, SIZE)
    np.testing.assert_array_equal(pixels.numpy(), np.stack([_golden_pixels(v) for v in views]))
    golden = np.stack([_golden_pixels(_golden_uint8(f)) for f in frames.numpy()])
    assert np.abs(pixels.numpy() - golden).max() <= 1 / 127.5 + 1e-6


@pytest.mark.parametrize(("h", "w"), [(256, 256), (480, 640), (97, 131)])
def test_eval_transform_then_processor_is_the_golden_chain(h, w):
    """The training/policy path (VideoTransform in eval, then GrootProcessor) and the engine's function
    give the same pixels, within one level of the golden."""
    frames = _frames(h, w, 11)[:1]  # [T=1, H, W, 3]
    camera = {"resolution": [w, h], "channels": 3, "fps": 10}
    metadata = DatasetMetadata(statistics={}, modalities={"video": {"cam": camera}}, embodiment_tag="gr1")
    video = VideoTransform(["video.cam"], crop_scale=SCALE, image_size=SIZE).eval()
    video.set_metadata(metadata)
    view = video.apply({"video.cam": frames})["video.cam"]
    processor = GrootProcessor(ByteTokenizer(), image_size=SIZE, num_image_tokens=4)
    pixels = processor.pixels(view)
    assert torch.equal(pixels, image_ops.model_pixels(torch.from_numpy(frames), SIZE, SCALE))
    diff = np.abs(view.astype(np.int16) - _golden_uint8(frames[0])[None].astype(np.int16))
    assert diff.max() <= 1
