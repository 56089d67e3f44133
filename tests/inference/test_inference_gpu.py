"""On a GPU: the CUDA-graph fast path equals the eager model (n1.5-3b sizes, random bf16 weights)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from inference_samples import eager_on_engine_pixels, make_sample, random_bf16_model

from groot.data import image_ops
from groot.inference import InferenceEngine

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
BF16_EPS = 2.0**-7  # relative spacing of bf16 numbers: one last-bit flip of |a| in [2, 4) is 1.6e-2


@pytest.fixture(scope="module")
def model_3b():
    return random_bf16_model("n1.5-3b")


def test_gpu_preprocessing_within_one_uint8_level_of_cpu():
    frames = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (4, 256, 256, 3), dtype=np.uint8))
    cpu = image_ops.crop_resize(frames, 0.95, 224)
    gpu = image_ops.crop_resize(frames.cuda(), 0.95, 224).cpu()
    assert (cpu.int() - gpu.int()).abs().max() <= 1
    pixels = image_ops.model_pixels(frames.cuda(), 224, 0.95)
    assert pixels.shape == (4, 3, 224, 224) and pixels.is_cuda


@pytest.mark.parametrize("languages", [["pick up the red cube and put it in the bowl"],
                                       ["pick", "open the top drawer and put the bowl inside", "wipe", "go"]])
def test_exact_graphs_are_bit_identical_to_eager_and_to_no_graphs(model_3b, languages):
    model, processor = model_3b
    rng = np.random.default_rng(len(languages))
    graphs = InferenceEngine(model, processor, max_batch=8, batch_buckets=(1, 4, 8))
    plain = InferenceEngine(model, processor, max_batch=8, batch_buckets=(1, 4, 8), use_cuda_graphs=False)
    for _ in range(2):  # a second observation: the replay must read the refreshed static buffers
        samples = [make_sample(rng, text, embodiment_id=31, raw_size=256) for text in languages]
        noise = torch.randn(len(samples), 16, 32, device="cuda", dtype=torch.bfloat16)
        fast = graphs.predict(samples, noise=noise).float()
        no_graph = plain.predict(samples, noise=noise).float()
        eager = eager_on_engine_pixels(model, processor, graphs, samples, noise)
        print(f"batch {len(samples)}: |graph - no graph| {(fast - no_graph).abs().max().item():.2e}, "
              f"|fast - eager| {(fast - eager).abs().max().item():.2e}, "
              f"|eager| max {eager.abs().max().item():.2f}")
        assert torch.isfinite(fast).all()
        assert torch.equal(fast, no_graph)
        assert torch.equal(fast, eager)
    assert graphs.captured_graphs == 2


@pytest.mark.parametrize("variant", [{"exact": False},
                                     {"exact": False, "compile": True}])  # the Policy's default
def test_fast_variants_stay_within_bf16_rounding(model_3b, variant):
    model, processor = model_3b
    rng = np.random.default_rng(3)
    engine = InferenceEngine(model, processor, max_batch=4, **variant)
    samples = [make_sample(rng, text, embodiment_id=31, raw_size=256) for text in ("pick the cube", "wipe")]
    noise = torch.randn(2, 16, 32, device="cuda", dtype=torch.bfloat16)
    fast = engine.predict(samples, noise=noise).float()
    eager = eager_on_engine_pixels(model, processor, engine, samples, noise)
    scale = eager.abs().max().clamp(min=1.0)
    diff = (fast - eager).abs().max()
    print(f"{variant}: |fast - eager| {diff.item():.2e}, |eager| max {scale.item():.2f}")
    assert diff <= 4 * BF16_EPS * scale
