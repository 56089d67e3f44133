"""On a GPU: the CUDA-graph fast path runs N1.6 (n1.6-3b sizes, random bf16 weights) and equals the
eager model bit for bit in exact mode; native-aspect frames keep their own image-token count."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from inference_samples import eager_on_engine_pixels, make_sample, random_bf16_model

from groot.inference import InferenceEngine

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]
NEW_EMBODIMENT = 10  # N1.6 projector index of new_embodiment


@pytest.fixture(scope="module")
def model_3b():
    return random_bf16_model("n1.6-3b")


@pytest.mark.parametrize("raw_size, tokens", [(256, 81), ((480, 640), 108)])
def test_exact_graphs_are_bit_identical_to_eager(model_3b, raw_size, tokens):
    model, processor = model_3b
    head = model.action_head.cfg
    rng = np.random.default_rng(0)
    engine = InferenceEngine(model, processor, max_batch=4, batch_buckets=(1, 4))
    assert processor.image_tokens(*engine.geometry.output_size(*np.broadcast_to(raw_size, 2))) == tokens
    for languages in (["pick up the red cube"], ["pick", "open the top drawer", "wipe"]):
        samples = [make_sample(rng, text, num_images=2, embodiment_id=NEW_EMBODIMENT, raw_size=raw_size,
                               state_dim=head.max_state_dim) for text in languages]
        noise = torch.randn(len(samples), head.action_horizon, head.action_dim, device="cuda",
                            dtype=torch.bfloat16)
        fast = engine.predict(samples, noise=noise).float()
        eager = eager_on_engine_pixels(model, processor, engine, samples, noise)
        print(f"{raw_size} batch {len(samples)}: |fast - eager| {(fast - eager).abs().max().item():.2e}")
        assert torch.isfinite(fast).all()
        assert torch.equal(fast, eager)
