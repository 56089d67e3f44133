"""The engine's building blocks give the eager model's numbers (tiny preset, fp32, CPU)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from inference_samples import make_sample

from groot.data import image_ops
from groot.errors import ObservationError
from groot.inference import InferenceEngine
from groot.inference.fast_forward import DenoisingConstants, denoise, key_padding_bias
from groot.model.processor import GrootProcessor

ATOL = 2e-5


def eager_actions(model, processor, samples, noise):
    """The reference: CPU transform (centre crop + resize), processor, GR00TN15.get_action."""
    size = processor.image_size
    transformed = [dict(s, images=image_ops.crop_resize(torch.from_numpy(s["images"]), 0.95, size).numpy())
                   for s in samples]
    return model.get_action(processor(transformed), noise=noise)["action_pred"]


def assert_matches(fast: torch.Tensor, eager: torch.Tensor) -> None:
    torch.testing.assert_close(fast, eager, atol=ATOL, rtol=0)


def test_batch_with_left_and_batch_padding_matches_eager(tiny_model, tiny_processor):
    rng = np.random.default_rng(0)
    samples = [make_sample(rng, "pick"), make_sample(rng, "put the red block in the bowl, then stop"),
               make_sample(rng, "open the drawer")]
    noise = torch.randn(3, 16, 32)
    engine = InferenceEngine(tiny_model, tiny_processor, max_batch=4)
    fast = engine.predict(samples, noise=noise)
    assert fast.shape == (3, 16, 32)
    assert_matches(fast, eager_actions(tiny_model, tiny_processor, samples, noise))


@pytest.mark.parametrize("length_multiple", [1, 32, 128])
def test_length_bucket_padding_with_mask_equals_unpadded(tiny_model, tiny_processor, length_multiple):
    rng = np.random.default_rng(1)
    samples = [make_sample(rng, "stack the cups")]
    noise = torch.randn(1, 16, 32)
    engine = InferenceEngine(tiny_model, tiny_processor, length_multiple=length_multiple)
    staged = engine.stage(samples, noise)
    assert staged.shape_key[1] % length_multiple == 0 and staged.shape_key[1] >= staged.prompt_length
    engine.encode(staged)
    fast = engine.denoise(staged)
    assert_matches(fast, eager_actions(tiny_model, tiny_processor, samples, noise))


def test_length_padding_without_the_key_mask_would_change_results(tiny_model):
    """The masks are what keeps bucket padding exact: unmasked padding keys move the actions."""
    head = tiny_model.action_head
    torch.manual_seed(2)
    features, state, noise = torch.randn(1, 20, 64), torch.randn(1, 1, 64), torch.randn(1, 16, 32)
    padded = torch.cat([features, torch.randn(1, 12, 64)], dim=1)
    consts = DenoisingConstants.build(head, 4)
    reference = head.sample(features, state, torch.tensor([3]), noise=noise)
    masked = denoise(head, consts, padded, key_padding_bias(20, 32, 1, torch.float32), state, noise, 3)
    unmasked = denoise(head, consts, padded, torch.zeros(1, 1, 1, 32), state, noise, 3)
    torch.testing.assert_close(masked, reference, atol=ATOL, rtol=0)
    assert (unmasked - reference).abs().max() > 1e-3


@pytest.mark.parametrize("num_steps", [1, 4])
def test_precomputed_kv_and_step_constants_match_head_sample(tiny_model, num_steps):
    head = tiny_model.action_head
    torch.manual_seed(3)
    features, state, noise = torch.randn(2, 24, 64), torch.randn(2, 1, 64), torch.randn(2, 16, 32)
    consts = DenoisingConstants.build(head, num_steps)
    fast = denoise(head, consts, features, torch.zeros(2, 1, 1, 24), state, noise, 5)
    eager = head.sample(features, state, torch.tensor([5, 5]), num_steps=num_steps, noise=noise)
    torch.testing.assert_close(fast, eager, atol=ATOL, rtol=0)


def test_mixed_embodiments_match_eager(tiny_model, tiny_processor):
    rng = np.random.default_rng(4)
    samples = [make_sample(rng, "wipe", embodiment_id=3), make_sample(rng, "wipe", embodiment_id=7)]
    noise = torch.randn(2, 16, 32)
    engine = InferenceEngine(tiny_model, tiny_processor)
    staged = engine.stage(samples, noise)
    assert staged.category is None
    engine.encode(staged)
    fast = engine.denoise(staged)
    assert_matches(fast, eager_actions(tiny_model, tiny_processor, samples, noise))
    same = [dict(s, embodiment_id=3) for s in samples]
    assert (engine.predict(same, noise=noise) - fast).abs().max() > 1e-3


def test_seeded_noise_draw_matches_eager(tiny_model, tiny_processor):
    rng = np.random.default_rng(5)
    samples = [make_sample(rng, "push the button", num_images=2)]
    engine = InferenceEngine(tiny_model, tiny_processor)
    torch.manual_seed(11)
    fast = engine.predict(samples)
    torch.manual_seed(11)
    assert_matches(fast, eager_actions(tiny_model, tiny_processor, samples, None))


def test_chunks_over_max_batch_match_eager_per_chunk(tiny_model, tiny_processor):
    rng = np.random.default_rng(6)
    samples = [make_sample(rng, "go" * (i + 1)) for i in range(5)]
    noise = torch.randn(5, 16, 32)
    fast = InferenceEngine(tiny_model, tiny_processor, max_batch=2).predict(samples, noise=noise)
    eager = torch.cat([eager_actions(tiny_model, tiny_processor, samples[i:i + 2], noise[i:i + 2])
                       for i in range(0, 5, 2)])
    torch.testing.assert_close(fast, eager, atol=ATOL, rtol=0)


def test_prompt_cache_tokenizes_each_instruction_once(tiny_model):
    processor = GrootProcessor.for_config(tiny_model.config)
    calls = []
    encode = processor.tokenizer.encode
    processor.tokenizer.encode = lambda text: calls.append(text) or encode(text)
    rng = np.random.default_rng(7)
    engine = InferenceEngine(tiny_model, processor)
    for _ in range(3):
        engine.predict([make_sample(rng, "fold the towel"), make_sample(rng, "fold the towel")])
    assert len(calls) == 1


def test_image_token_count_mismatch_raises(tiny_model):
    processor = GrootProcessor.for_config(tiny_model.config)
    processor.num_image_tokens = 5  # the prompt now disagrees with the vision tower's 16 tokens
    with pytest.raises(ObservationError, match="image tokens"):
        InferenceEngine(tiny_model, processor).predict([make_sample(np.random.default_rng(8), "x")])


def test_mismatched_image_shapes_raise(tiny_model, tiny_processor):
    rng = np.random.default_rng(9)
    samples = [make_sample(rng, "a"), make_sample(rng, "b", raw_size=48)]
    with pytest.raises(ObservationError, match="one uint8"):
        InferenceEngine(tiny_model, tiny_processor).predict(samples)
