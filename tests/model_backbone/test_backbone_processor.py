"""GrootProcessor: prompt layout, left padding, pixels, pass-through keys and the prompt cache.

The golden prompts are what the original N1.5 renders, read from NVIDIA/Isaac-GR00T @
5e3ef5ef9a89b647f11490d749b0049ae2796b94 ("N1.5 Opensource Release"; the files are unchanged through
4af2b622892f7dcb5aae5a3fb70bcb02dc217b96): `gr00t/model/transforms.py` (GR00TTransform: one user
message, images then text, `apply_chat_template(tokenize=False, add_generation_prompt=True)`),
`gr00t/model/backbone/eagle2_hg_model/chat_template.json` (system turn, `<image-k>` per image, text with
no separator), `processing_eagle2_5_vl.py` + `processor_config.json` (`<image-k>` ->
`<image k><img>` + `<IMG_CONTEXT>` x 256 per tile + `</img>`), `added_tokens.json`,
`special_tokens_map.json` (pad `<|endoftext|>`). The token ids were computed with transformers'
Qwen2 tokenizer from that folder's `vocab.json` + `merges.txt` + `tokenizer_config.json`.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from groot.errors import CheckpointError, ObservationError
from groot.model.config import preset_config
from groot.model.processor import GrootProcessor, render_prompt
from groot.model.tokenizer import EAGLE_PROCESSOR_REPO, ByteTokenizer, load_tokenizer

N_TOK = 4
SYSTEM_TURN = "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
IMAGE_256 = "<img>" + "<IMG_CONTEXT>" * 256 + "</img>"
# "Pick up the cube." with 2 <IMG_CONTEXT> per image, tokenized with the original's Eagle vocabulary
GOLDEN_IDS_HEAD = [151644, 8948, 198, 2610, 525, 264, 10950, 17847, 13, 151645, 198, 151644, 872, 198]
GOLDEN_IDS_IMAGE = {1: [27, 1805, 220, 16, 29, 151670, 151669, 151669, 151671],
                    2: [27, 1805, 220, 17, 29, 151670, 151669, 151669, 151671]}
GOLDEN_IDS_TAIL = [36953, 705, 279, 23739, 13, 151645, 198, 151644, 77091, 198]


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


def test_prompt_equals_the_original_rendering_for_one_view():
    assert render_prompt("Pick up the cube.", 1, 256) == (
        SYSTEM_TURN + "<|im_start|>user\n<image 1>" + IMAGE_256 + "Pick up the cube.<|im_end|>\n"
        "<|im_start|>assistant\n")


def test_prompt_equals_the_original_rendering_for_two_views():
    assert render_prompt("stack the cups", 2, 256) == (
        SYSTEM_TURN + "<|im_start|>user\n<image 1>" + IMAGE_256 + "<image 2>" + IMAGE_256
        + "stack the cups<|im_end|>\n<|im_start|>assistant\n")


def _eagle_tokenizer_dir() -> Path | None:
    """The Eagle tokenizer files: $GROOT_EAGLE_TOKENIZER_DIR, else the hub cache (never downloaded)."""
    if os.environ.get("GROOT_EAGLE_TOKENIZER_DIR"):
        return Path(os.environ["GROOT_EAGLE_TOKENIZER_DIR"])
    from huggingface_hub import try_to_load_from_cache

    cached = [try_to_load_from_cache(EAGLE_PROCESSOR_REPO, name) for name in ("vocab.json", "merges.txt",
                                                                              "added_tokens.json")]
    if all(isinstance(path, str) for path in cached):
        return Path(cached[0]).parent
    return None


@pytest.mark.parametrize("views", [1, 2])
def test_prompt_token_ids_equal_the_original_tokenizer(views):
    directory = _eagle_tokenizer_dir()
    if directory is None:
        pytest.skip("Eagle tokenizer files not available (set GROOT_EAGLE_TOKENIZER_DIR)")
    tokenizer = load_tokenizer("qwen3", directory)
    assert (tokenizer.pad_token_id, tokenizer.image_token_id) == (151643, 151669)
    images = [i for k in range(1, views + 1) for i in GOLDEN_IDS_IMAGE[k]]
    assert tokenizer.encode(render_prompt("Pick up the cube.", views, 2)) == (
        GOLDEN_IDS_HEAD + images + GOLDEN_IDS_TAIL)
    assert len(tokenizer.encode(render_prompt("Pick up the cube.", views, 256))) == {1: 287, 2: 550}[views]


def test_batch_is_left_padded_with_images_in_order():
    proc = GrootProcessor(ByteTokenizer(), image_size=8, num_image_tokens=N_TOK)
    samples = [_sample("go", 2, seed=1), _sample("pick up the long red block", 1, seed=2)]
    batch = proc(samples)
    ids, mask = batch.input_ids, batch.attention_mask
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
    assert batch.pixel_values.shape == (3, 3, 8, 8) and batch.pixel_values.dtype == torch.float32
    assert torch.allclose(batch.pixel_values, torch.tensor(expected_pixels, dtype=torch.float32)
                          .permute(0, 3, 1, 2), atol=1e-6)
    assert batch.state.shape == (2, 1, 64) and batch.state_mask.dtype == torch.bool
    assert batch.action.shape == (2, 16, 32)
    assert torch.equal(batch.action[1], torch.from_numpy(samples[1]["action"]))
    assert batch.embodiment_id.tolist() == [31, 31] and batch.embodiment_id.dtype == torch.int64


def test_images_resized_to_model_size_and_inference_batch_has_no_action():
    proc = GrootProcessor(ByteTokenizer(), image_size=8, num_image_tokens=N_TOK)
    batch = proc([_sample("go", 1, size=16, with_action=False)])
    assert batch.pixel_values.shape == (1, 3, 8, 8)
    assert batch.pixel_values.min() >= -1 and batch.pixel_values.max() <= 1
    assert batch.action is None and batch.action_mask is None
    with pytest.raises(ObservationError, match="'action'"):
        proc([_sample("a", 1), _sample("b", 1, with_action=False)])


def test_language_must_be_the_plain_string():
    proc = GrootProcessor(ByteTokenizer(), image_size=8, num_image_tokens=N_TOK)
    for language in (["stack"], np.array(["stack"]), np.array([["stack"]])):
        with pytest.raises(ObservationError, match="instruction string"):
            proc.prompt_ids(language, 1)
    assert proc.prompt_ids(np.str_("stack"), 1) == ByteTokenizer().encode(render_prompt("stack", 1, N_TOK))


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
        features = backbone(batch.pixel_values, batch.input_ids, batch.attention_mask)
    assert features.shape == (*batch.input_ids.shape, cfg.backbone_cfg.llm.hidden_size)
    assert torch.isfinite(features).all()


def test_for_config_checks_image_token_id():
    cfg = preset_config("tiny")
    cfg.backbone_cfg.image_token_id = 999
    with pytest.raises(CheckpointError, match="image_token_id"):
        GrootProcessor.for_config(cfg)
