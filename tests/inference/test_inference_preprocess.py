"""The engine's pixel function, run on the CPU, equals the CPU transform + processor path exactly."""

from __future__ import annotations

import numpy as np
import torch

from groot.data.image_ops import model_pixels
from groot.data.transforms import VideoTransform
from groot.inference.gpu_preprocess import PackedUpload


def test_preprocess_equals_eval_video_transform_and_processor(tiny_processor):
    rng = np.random.default_rng(1)
    frames = rng.integers(0, 256, (3, 2, 80, 96, 3), dtype=np.uint8)  # [B, T*V, H, W, 3]
    transform = VideoTransform(["video.front"], crop_scale=0.95, image_size=56).eval()
    expected = torch.stack([
        tiny_processor.pixels(transform.apply({"video.front": f})["video.front"]) for f in frames
    ])  # [B, T*V, 3, 56, 56]
    fast = model_pixels(torch.from_numpy(frames), 56, crop_scale=0.95)
    assert fast.shape == expected.shape
    assert torch.equal(fast, expected)


def test_preprocess_without_crop_matches_processor_resize(tiny_processor):
    rng = np.random.default_rng(2)
    frames = rng.integers(0, 256, (2, 70, 70, 3), dtype=np.uint8)
    fast = model_pixels(torch.from_numpy(frames), 56, crop_scale=None)
    assert torch.equal(fast, tiny_processor.pixels(frames))
    model_size = frames[:, :56, :56]
    fast_model_size = model_pixels(torch.from_numpy(model_size), 56, None)
    assert torch.equal(fast_model_size, tiny_processor.pixels(model_size))


def test_preprocess_casts_after_float32_arithmetic():
    frames = torch.arange(256, dtype=torch.uint8).view(1, 16, 16, 1).expand(1, 16, 16, 3).contiguous()
    bf16 = model_pixels(frames, 16, None, dtype=torch.bfloat16)
    assert bf16.dtype == torch.bfloat16
    assert torch.equal(bf16, model_pixels(frames, 16, None).to(torch.bfloat16))


def test_packed_upload_fields_are_aligned_views_written_row_by_row():
    upload = PackedUpload({"images": ((3, 1, 5, 5, 3), torch.uint8), "state": ((3, 1, 4), torch.float32)},
                          torch.device("cpu"))
    images, state = upload.fields["images"], upload.fields["state"]
    assert images.shape == (3, 1, 5, 5, 3) and state.dtype == torch.float32
    assert state.data_ptr() % PackedUpload.ALIGNMENT == 0
    rows = [np.full((1, 4), i, dtype=np.float64) for i in range(2)]  # cast to the field's dtype
    upload.write("state", rows)
    upload.write("images", [np.full((1, 5, 5, 3), 7, dtype=np.uint8)])
    upload.send()
    assert torch.equal(state[:, 0, 0], torch.tensor([0.0, 1.0, 0.0]))  # row 2 keeps its zeros
    assert (images[0] == 7).all() and (images[1:] == 0).all()
