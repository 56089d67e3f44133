"""GrootN16Processor: the N1.6 prompt, formalized language, native-size images and their token counts.

Golden facts from GROOT_N16_SPEC (Verified item 3: the rendered chat template; 2.3 / 4.3: tokens per image
H * W / 784, smart_resize 256 x 256 -> 252 x 252 and 256 x 340 -> 252 x 336; 4.1: formalization).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from groot.errors import ObservationError
from groot.model.config import preset_config
from groot.model.gr00t_n16 import GR00TN16
from groot.model.native_resolution import resize_to_grid, smart_resize
from groot.model.processor import (
    GrootN16Processor,
    GrootProcessor,
    formalize_language,
    render_n16_prompt,
)
from groot.model.tokenizer import ByteTokenizer

CONTEXT = "<IMG_CONTEXT>"


def _images(num: int, height: int, width: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (num, height, width, 3), dtype=np.uint8)


def _sample(language: str, images: np.ndarray, dim: int = 32) -> dict:
    return {"images": images, "language": language, "state": np.zeros((1, dim), np.float32),
            "embodiment_id": 10}


def _processor(formalize: bool = True) -> GrootN16Processor:
    return GrootN16Processor(ByteTokenizer(), grid=28, formalize=formalize)


def test_two_view_prompt_is_the_rendered_chat_template():
    expected = ("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
                "pick up the ketchup"
                "<image 1><img>" + CONTEXT * 81 + "</img>"
                "<image 2><img>" + CONTEXT * 81 + "</img>"
                "<|im_end|>\n")
    assert render_n16_prompt("pick up the ketchup", 2, 81) == expected
    batch = _processor()([_sample("Pick up the Ketchup!", _images(2, 252, 252))])
    assert ByteTokenizer().decode(batch.input_ids[0].tolist()) == expected
    assert not expected.endswith("<|im_start|>assistant\n")  # no generation prompt


@pytest.mark.parametrize(("text", "formal"), [
    ("Pick up the Ketchup!", "pick up the ketchup"),
    ("Put the bowl on the plate.", "put the bowl on the plate"),
    ("Open the top-drawer, then close it", "open the topdrawer then close it"),
    ("move_to (x=3)", "move_to x3"),  # "_" and digits are word characters
    ("Stack\tthe  Cups", "stack\tthe  cups"),  # whitespace kept as is
    ("Déplace la Tasse !", "déplace la tasse "),  # \w is Unicode-aware, as in the original
])
def test_formalize_language(text, formal):
    assert formalize_language(text) == formal


def test_formalization_follows_the_processor_flag():
    images = _images(1, 28, 28)
    decoded = [ByteTokenizer().decode(proc([_sample("Pick up the Ketchup!", images)]).input_ids[0].tolist())
               for proc in (_processor(True), _processor(False))]
    assert "user\npick up the ketchup<image 1>" in decoded[0]
    assert "user\nPick up the Ketchup!<image 1>" in decoded[1]


@pytest.mark.parametrize(("height", "width", "tokens"), [(252, 252, 81), (252, 336, 108), (256, 256, 81),
                                                        (256, 340, 108), (56, 84, 6),
                                                        (28, 56, 6)])  # 2 < 4 tokens: up to 56 x 84
def test_tokens_per_image_follow_the_image_size(height, width, tokens):
    batch = _processor()([_sample("go", _images(2, height, width))])
    assert int((batch.input_ids == ByteTokenizer().image_token_id).sum()) == 2 * tokens
    grid_h, grid_w = smart_resize(height, width)
    assert batch.pixel_values.shape == (2, 3, grid_h, grid_w) and grid_h * grid_w // 784 == tokens


def test_smart_resize_rule():
    assert smart_resize(256, 256) == (252, 252)
    assert smart_resize(256, 340) == (252, 336)
    assert smart_resize(480, 640) == (476, 644)  # 17.1 -> 17 and 22.9 -> 23 patches of 28
    assert smart_resize(20, 30) == (56, 84)  # below 4 tokens: scaled up by sqrt(3136 / 600), ceil
    assert smart_resize(2000, 2000) == (1792, 1792)  # above 4096 tokens: scaled down to 64 x 64, floor
    assert smart_resize(70, 84) == (56, 84)  # 70 / 28 = 2.5 rounds half to even (Python round): 2 patches
    with pytest.raises(ObservationError, match="ratio"):
        smart_resize(10, 3000)


@pytest.mark.parametrize(("height", "width"), [(64, 90), (480, 640), (400, 300), (20, 30)])
def test_resize_matches_pil_bicubic(height, width):
    image = _images(1, height, width, seed=height)[0]
    out = resize_to_grid(torch.from_numpy(image)).numpy()
    new_h, new_w = smart_resize(height, width)
    reference = np.asarray(Image.fromarray(image).resize((new_w, new_h)))  # PIL's default: bicubic
    diff = np.abs(out.astype(int) - reference.astype(int))
    assert out.shape == reference.shape and diff.max() <= 1 and diff.mean() < 0.005


def test_pixels_are_normalized_without_resizing_grid_sizes():
    images = _images(2, 56, 84)
    pixels = _processor().pixels(images)
    expected = (torch.from_numpy(images).permute(0, 3, 1, 2).float() - 127.5) / 127.5
    assert torch.equal(pixels, expected)


def test_batch_images_must_share_one_size():
    proc = _processor()
    with pytest.raises(ObservationError, match="one size"):
        proc([_sample("a", _images(1, 252, 252)), _sample("b", _images(1, 252, 336))])
    with pytest.raises(ObservationError, match="one size"):  # after smart_resize: 252 x 252 vs 252 x 336
        proc([_sample("a", _images(1, 256, 256)), _sample("b", _images(1, 256, 340))])
    batch = proc([_sample("a", _images(1, 256, 256)), _sample("b", _images(2, 252, 252))])
    assert batch.pixel_values.shape == (3, 3, 252, 252)


def test_prompt_cache_key_includes_the_image_token_count():
    calls = []

    class CountingTokenizer(ByteTokenizer):
        def encode(self, text):
            calls.append(text)
            return super().encode(text)

    proc = GrootN16Processor(CountingTokenizer(), grid=28)
    small = proc.prompt_ids("go", 1, 81)
    large = proc.prompt_ids("go", 1, 108)
    assert small is not large and len(large) - len(small) == 27 and len(calls) == 2
    assert proc.prompt_ids("go", 1, 81) is small and len(calls) == 2
    with pytest.raises(ObservationError, match="num_image_tokens"):
        proc.prompt_ids("go", 1)


def test_for_config_picks_the_generation_and_feeds_the_n16_tiny_model():
    config = preset_config("n1.6-tiny")
    proc = GrootProcessor.for_config(config)
    assert type(proc) is GrootN16Processor and proc.grid == 28 and proc.formalize
    config.formalize_language = False
    assert not GrootProcessor.for_config(config).formalize
    assert type(GrootProcessor.for_config(preset_config("tiny"))) is GrootProcessor

    torch.manual_seed(0)
    model = GR00TN16(config).eval()
    batch = proc([_sample("Stack the cups.", _images(2, 56, 84)), _sample("go", _images(2, 56, 84, seed=1))])
    _, image = model.vl_masks(batch)
    assert image.sum(1).tolist() == [12, 12]  # 2 views x 56 * 84 / 784
    noise = torch.randn(2, config.action_head_cfg.action_horizon, config.action_head_cfg.action_dim)
    actions = model.get_action(batch, noise=noise)["action_pred"]
    assert actions.shape == noise.shape and torch.isfinite(actions).all()
