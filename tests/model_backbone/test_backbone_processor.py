"""GrootProcessor: prompt layout, left padding, pixels, pass-through keys and the prompt cache."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from groot.errors import CheckpointError, ObservationError
from groot.model.config import preset_config
from groot.model.processor import GrootProcessor, render_prompt
from groot.model.tokenizer import ByteTokenizer

N_TOK = 4


def _sample(language: str, num_images: int, size: int = 8, with_action: bool = True, seed: int = 0):
    rng = np.random.default_rng(seed)
    sample = {
        "images": rng.integers(0, 256, (num_images, size, size, 3), dtype=np.uint8),
        "language": language,
        "state": rng.standard_normal((1, 64)).astype(np.float32),
        "state_mask": np.ones((1, 64), dtype=bool),
        "embodiment_id": 31,
    }
    if with_action:
        sample["action"] = rng.standard_normal((16, 32)).astype(np.float32)
        sample["action_mask"] = np.ones((16, 32), dtype=bool)
    return sample


def test_prompt_text_layout():
    text = render_prompt("stack the cups", 2, 3)
    img = "<img>" + "<IMG_CONTEXT>" * 3 + "</img>"
    assert text == ("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
                    f"<image 1>{img}<image 2>{img}stack the cups<|im_end|>\n<|im_start|>assistant\n")


def test_batch_is_left_padded_with_images_in_order():
    proc = GrootProcessor(ByteTokenizer(), image_size=8, num_image_tokens=N_TOK)
    samples = [_sample("go", 2, seed=1), _sample("pick up the long red block", 1, seed=2)]
    batch = proc(samples)
    ids, mask = batch["input_ids"], batch["attention_mask"]
    prompts = [ByteTokenizer().encode(render_prompt(s["language"], len(s["images"]), N_TOK)) for s in samples]
    lengths = [len(p) for p in prompts]
    assert ids.shape == (2, max(lengths)) and ids.dtype == torch.int64 and mask.dtype == torch.int64
    for row, n in enumerate(lengths):
        pad = ids.shape[1] - n
        assert (ids[row, :pad] == 256).all() and (mask[row, :pad] == 0).all()
        assert (mask[row, pad:] == 1).all() and ids[row, pad] == 257  # <|im_start|>
        assert ids[row, pad:].tolist() == prompts[row]
    assert (ids == 261).sum(dim=1).tolist() == [2 * N_TOK, N_TOK]
    expected_pixels = np.concatenate([samples[0]["images"], samples[1]["images"]]) / 255.0 * 2 - 1
    assert batch["pixel_values"].shape == (3, 3, 8, 8) and batch["pixel_values"].dtype == torch.float32
    assert torch.allclose(batch["pixel_values"], torch.tensor(expected_pixels, dtype=torch.float32)
                          .permute(0, 3, 1, 2), atol=1e-6)
    assert batch["state"].shape == (2, 1, 64) and batch["state_mask"].dtype == torch.bool
    assert batch["action"].shape == (2, 16, 32)
    assert torch.equal(batch["action"][1], torch.from_numpy(samples[1]["action"]))
    assert batch["embodiment_id"].tolist() == [31, 31] and batch["embodiment_id"].dtype == torch.int64


def test_images_resized_to_model_size_and_inference_batch_has_no_action():
    proc = GrootProcessor(ByteTokenizer(), image_size=8, num_image_tokens=N_TOK)
    batch = proc([_sample("go", 1, size=16, with_action=False)])
    assert batch["pixel_values"].shape == (1, 3, 8, 8)
    assert batch["pixel_values"].min() >= -1 and batch["pixel_values"].max() <= 1
    assert "action" not in batch and "action_mask" not in batch
    with pytest.raises(ObservationError, match="'action'"):
        proc([_sample("a", 1), _sample("b", 1, with_action=False)])


def test_list_language_renders_like_the_original_template():
    proc = GrootProcessor(ByteTokenizer(), image_size=8, num_image_tokens=N_TOK)
    assert proc.prompt_ids(["stack"], 1) == ByteTokenizer().encode(render_prompt("['stack']", 1, N_TOK))


def test_pad_prompts_left_pads_to_the_longest_prompt():
    proc = GrootProcessor(ByteTokenizer(), image_size=8, num_image_tokens=N_TOK)
    ids, mask = proc.pad_prompts([[5, 6, 7], [8], [9, 10]])
    assert ids.tolist() == [[5, 6, 7], [256, 256, 8], [256, 9, 10]]
    assert mask.tolist() == [[1, 1, 1], [0, 0, 1], [0, 1, 1]]
    assert ids.dtype == mask.dtype == torch.int64


def test_language_holding_image_tokens_is_rejected():
    proc = GrootProcessor(ByteTokenizer(), image_size=8, num_image_tokens=N_TOK)
    with pytest.raises(ObservationError, match="IMG_CONTEXT"):
        proc.prompt_ids("look at <IMG_CONTEXT>", 1)


def test_prompt_cache_is_lru_and_bounded():
    calls = []

    class CountingTokenizer(ByteTokenizer):
        def encode(self, text):
            calls.append(text)
            return super().encode(text)

    proc = GrootProcessor(CountingTokenizer(), image_size=8, num_image_tokens=N_TOK, cache_size=2)
    first = proc.prompt_ids("a", 1)
    assert proc.prompt_ids("a", 1) is first and len(calls) == 1
    proc.prompt_ids("a", 2)  # different image count -> new entry
    proc.prompt_ids("a", 1)  # refresh "a", 1
    proc.prompt_ids("b", 1)  # evicts the least recently used ("a", 2)
    assert len(calls) == 3
    proc.prompt_ids("a", 1)
    assert len(calls) == 3
    proc.prompt_ids("a", 2)
    assert len(calls) == 4


def test_for_config_feeds_the_tiny_backbone():
    from groot.model.eagle import EagleBackbone

    cfg = preset_config("tiny")
    proc = GrootProcessor.for_config(cfg)
    assert proc.num_image_tokens == cfg.backbone_cfg.num_image_tokens
    batch = proc([_sample("go", 1, size=20, seed=3), _sample("stack it", 2, size=20, seed=4)])
    torch.manual_seed(0)
    backbone = EagleBackbone(cfg.backbone_cfg).eval()
    with torch.no_grad():
        features = backbone(batch["pixel_values"], batch["input_ids"], batch["attention_mask"])
    assert features.shape == (*batch["input_ids"].shape, cfg.backbone_cfg.llm.hidden_size)
    assert torch.isfinite(features).all()


def test_for_config_checks_image_token_id():
    cfg = preset_config("tiny")
    cfg.backbone_cfg.image_token_id = 999
    with pytest.raises(CheckpointError, match="image_token_id"):
        GrootProcessor.for_config(cfg)
