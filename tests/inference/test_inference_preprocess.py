"""GPU preprocessing functions, run on the CPU, equal the CPU transform + processor path exactly."""

from __future__ import annotations

import numpy as np
import torch

from groot.data.transforms import VideoTransform
from groot.inference.gpu_preprocess import PinnedStaging, preprocess_images


def test_preprocess_equals_eval_video_transform_and_processor(tiny_processor):
    rng = np.random.default_rng(1)
    frames = rng.integers(0, 256, (3, 2, 80, 96, 3), dtype=np.uint8)  # [B, T*V, H, W, 3]
    transform = VideoTransform(["video.front"], crop_scale=0.95, image_size=56).eval()
    expected = torch.stack([
        tiny_processor.pixels(transform.apply({"video.front": f})["video.front"]) for f in frames
    ])  # [B, T*V, 3, 56, 56]
    fast = preprocess_images(torch.from_numpy(frames), 56, crop_scale=0.95)
    assert fast.shape == expected.shape
    assert torch.equal(fast, expected)


def test_preprocess_without_crop_matches_processor_resize(tiny_processor):
    rng = np.random.default_rng(2)
    frames = rng.integers(0, 256, (2, 70, 70, 3), dtype=np.uint8)
    fast = preprocess_images(torch.from_numpy(frames), 56, crop_scale=None)
    assert torch.equal(fast, tiny_processor.pixels(frames))
    model_size = frames[:, :56, :56]
    fast_model_size = preprocess_images(torch.from_numpy(model_size), 56, None)
    assert torch.equal(fast_model_size, tiny_processor.pixels(model_size))


def test_preprocess_casts_after_float32_arithmetic():
    frames = torch.arange(256, dtype=torch.uint8).view(1, 16, 16, 1).expand(1, 16, 16, 3).contiguous()
    bf16 = preprocess_images(frames, 16, None, dtype=torch.bfloat16)
    assert bf16.dtype == torch.bfloat16
    assert torch.equal(bf16, preprocess_images(frames, 16, None).to(torch.bfloat16))


def test_pinned_staging_upload_into_cpu_rows():
    staging = PinnedStaging(torch.device("cpu"))
    target = torch.full((4, 2, 3), -1.0)
    rows = [np.full((2, 3), i, dtype=np.float32) for i in range(3)]
    out = staging.upload_into(target, rows)
    assert out.shape == (3, 2, 3)
    assert torch.equal(target[:3, 0, 0], torch.tensor([0.0, 1.0, 2.0]))
    assert torch.all(target[3] == -1.0)
    rows[0][:] = 7.0  # a shorter upload rewrites only target[:1]
    staging.upload_into(target, rows[:1])
    assert torch.equal(target[:3, 0, 0], torch.tensor([7.0, 1.0, 2.0]))
    uploaded = staging.upload([np.ones((5,), dtype=np.uint8)] * 2)
    assert uploaded.dtype == torch.uint8 and uploaded.shape == (2, 5)
    ids = staging.upload(np.arange(4, dtype=np.int64))  # scalar rows
    assert torch.equal(ids, torch.arange(4))
