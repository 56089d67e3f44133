"""The engine gives the eager model's numbers (tiny preset, fp32, CPU): bit-identical in exact mode."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from inference_samples import eager_actions, make_sample

from groot.data import image_ops
from groot.errors import ObservationError
from groot.inference import InferenceEngine
from groot.inference.fusion import FusedQwen3MLP
from groot.model.processor import GrootProcessor
from groot.model.qwen3 import Qwen3MLP

ATOL = 2e-5


def assert_matches(fast: torch.Tensor, eager: torch.Tensor) -> None:
    torch.testing.assert_close(fast, eager, atol=ATOL, rtol=0)


@pytest.mark.parametrize("batch", [1, 2])
def test_exact_length_is_bit_identical_to_eager(tiny_model, tiny_processor, batch):
    rng = np.random.default_rng(batch)
    samples = [make_sample(rng, "stack the cups") for _ in range(batch)]
    noise = torch.randn(batch, 16, 32)
    engine = InferenceEngine(tiny_model, tiny_processor, max_batch=2)
    for _ in range(2):  # the second call reuses the slot and its cached prompt block
        assert torch.equal(engine.predict(samples, noise=noise),
                           eager_actions(tiny_model, tiny_processor, samples, noise))


def test_batch_with_left_and_batch_padding_matches_eager(tiny_model, tiny_processor):
    rng = np.random.default_rng(0)
    samples = [make_sample(rng, "pick"), make_sample(rng, "put the red block in the bowl, then stop"),
               make_sample(rng, "open the drawer")]
    noise = torch.randn(3, 16, 32)
    engine = InferenceEngine(tiny_model, tiny_processor, max_batch=4)
    staged = engine.stage(samples, noise)
    assert staged.key.batch == 4 and staged.left_padded
    fast = engine.predict(samples, noise=noise)
    assert fast.shape == (3, 16, 32)
    assert_matches(fast, eager_actions(tiny_model, tiny_processor, samples, noise))


def test_fused_projections_match_eager_and_leave_the_model_as_it_was(tiny_model, tiny_processor):
    keys = list(tiny_model.state_dict())
    rng = np.random.default_rng(3)
    samples = [make_sample(rng, "wipe the table"), make_sample(rng, "wipe")]
    noise = torch.randn(2, 16, 32)
    classes = [type(module) for module in tiny_model.modules()]
    engine = InferenceEngine(tiny_model, tiny_processor, exact=False)
    fast = engine.predict(samples, noise=noise)
    assert_matches(fast, eager_actions(tiny_model, tiny_processor, samples, noise))
    assert list(tiny_model.state_dict()) == keys
    assert [type(module) for module in tiny_model.modules()] == classes
    mlp = tiny_model.backbone.eagle_model.language_model.model.layers[0].mlp
    fused_mlp = engine.fast_model.backbone.eagle_model.language_model.model.layers[0].mlp
    assert isinstance(mlp, Qwen3MLP) and not isinstance(mlp, FusedQwen3MLP)
    assert isinstance(fused_mlp, FusedQwen3MLP) and fused_mlp.up_proj.weight is mlp.up_proj.weight


def test_mixed_embodiments_match_eager(tiny_model, tiny_processor):
    rng = np.random.default_rng(4)
    samples = [make_sample(rng, "wipe", embodiment_id=3), make_sample(rng, "wipe", embodiment_id=7)]
    noise = torch.randn(2, 16, 32)
    engine = InferenceEngine(tiny_model, tiny_processor)
    staged = engine.stage(samples, noise)
    assert staged.category is None
    engine.encode(staged)
    fast = engine.denoise(staged)
    assert torch.equal(fast, eager_actions(tiny_model, tiny_processor, samples, noise))
    same = [dict(s, embodiment_id=3) for s in samples]
    assert (engine.predict(same, noise=noise) - fast).abs().max() > 1e-3


def test_seeded_noise_draw_matches_eager(tiny_model, tiny_processor):
    rng = np.random.default_rng(5)
    samples = [make_sample(rng, "push the button", num_images=2)]
    engine = InferenceEngine(tiny_model, tiny_processor, max_batch=4)  # noise lands in a [4, 16, 32] buffer
    torch.manual_seed(11)
    fast = engine.predict(samples)
    torch.manual_seed(11)
    assert torch.equal(fast, eager_actions(tiny_model, tiny_processor, samples, None))


def test_chunks_over_max_batch_match_eager_per_chunk(tiny_model, tiny_processor):
    rng = np.random.default_rng(6)
    samples = [make_sample(rng, "go" * (i + 1)) for i in range(5)]
    noise = torch.randn(5, 16, 32)
    fast = InferenceEngine(tiny_model, tiny_processor, max_batch=2).predict(samples, noise=noise)
    eager = torch.cat([eager_actions(tiny_model, tiny_processor, samples[i:i + 2], noise[i:i + 2])
                       for i in range(0, 5, 2)])
    torch.testing.assert_close(fast, eager, atol=ATOL, rtol=0)


def test_least_recently_used_shapes_are_dropped_and_rebuilt(tiny_model, tiny_processor):
    rng = np.random.default_rng(7)
    engine = InferenceEngine(tiny_model, tiny_processor, max_shapes=2)
    samples = {text: [make_sample(rng, text)] for text in ("a", "bb", "ccc")}  # three prompt lengths
    noise = torch.randn(1, 16, 32)
    for text in ("a", "bb", "ccc", "a"):
        fast = engine.predict(samples[text], noise=noise)
        assert torch.equal(fast, eager_actions(tiny_model, tiny_processor, samples[text], noise))
    kept = [len(tiny_processor.prompt_ids(t, 1)) for t in ("ccc", "a")]
    assert [key.length for key in engine._slots] == kept


def test_prompt_ids_are_tokenized_and_uploaded_once(tiny_model):
    processor = GrootProcessor.for_config(tiny_model.config)
    calls = []
    encode = processor.tokenizer.encode
    processor.tokenizer.encode = lambda text: calls.append(text) or encode(text)
    rng = np.random.default_rng(8)
    engine = InferenceEngine(tiny_model, processor)
    samples = [make_sample(rng, "fold the towel"), make_sample(rng, "fold the towel")]
    staged = engine.stage(samples)
    with torch.inference_mode():
        staged.slot.input_ids.fill_(-1)  # a stale upload would show
    engine.stage(samples)
    assert len(calls) == 1
    assert (staged.slot.input_ids == -1).all()
    engine.stage([samples[0], make_sample(rng, "fold the sheet")])  # same length, other prompt: uploaded
    assert (staged.slot.input_ids >= 0).all()


def test_engine_pixels_equal_the_cpu_transform(tiny_model, tiny_processor):
    rng = np.random.default_rng(9)
    samples = [make_sample(rng, "look", num_images=2)]
    engine = InferenceEngine(tiny_model, tiny_processor)
    staged = engine.stage(samples)
    engine.encode(staged)
    size = tiny_processor.image_size
    frames = torch.from_numpy(samples[0]["images"])
    expected = tiny_processor.pixels(image_ops.crop_resize(frames, 0.95, size))
    assert torch.equal(engine.pixels(staged), expected)


def test_image_token_count_mismatch_raises(tiny_model):
    processor = GrootProcessor.for_config(tiny_model.config)
    processor.num_image_tokens = 5  # the prompt now disagrees with the vision tower's 16 tokens
    with pytest.raises(ObservationError, match="image tokens"):
        InferenceEngine(tiny_model, processor).predict([make_sample(np.random.default_rng(10), "x")])


@pytest.mark.parametrize("change", ["size", "dtype"])
def test_mismatched_images_raise(tiny_model, tiny_processor, change):
    rng = np.random.default_rng(11)
    other = make_sample(rng, "b", raw_size=48) if change == "size" else dict(
        make_sample(rng, "b"), images=make_sample(rng, "b")["images"].astype(np.float32))
    with pytest.raises(ObservationError, match="one uint8"):
        InferenceEngine(tiny_model, tiny_processor).predict([make_sample(rng, "a"), other])


def test_wrong_noise_shape_raises(tiny_model, tiny_processor):
    sample = make_sample(np.random.default_rng(12), "a")
    with pytest.raises(ObservationError, match="noise"):
        InferenceEngine(tiny_model, tiny_processor).predict([sample], noise=torch.randn(2, 16, 32))
