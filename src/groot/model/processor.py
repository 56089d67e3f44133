"""GrootProcessor: model samples -> one `Batch` of tensors for the Eagle backbone and the action head.

Prompt: what the original N1.5 renders (NVIDIA/Isaac-GR00T @ 5e3ef5ef, `gr00t/model/transforms.py`
GR00TTransform with the processor files of `gr00t/model/backbone/eagle2_hg_model/`). One user message
holds the images, then the text; its `chat_template.json`, with `add_generation_prompt` and no
`add_vision_id`, writes a placeholder `<image-k>` per image and the text with no separator, and the
Eagle processor (`processing_eagle2_5_vl.py`, `processor_config.json`: 256 tokens per tile, one tile
per 224 x 224 image) expands each placeholder to `<image k><img>` + `<IMG_CONTEXT>` x 256 + `</img>`:

    <|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n
    <image 1><img><IMG_CONTEXT>x T</img><image 2><img>...</img>{language}<|im_end|>\n<|im_start|>assistant\n

`<image k>` is plain text (several BPE tokens). The language is the plain instruction string, the form
the original's training renders (its dataset yields a list of one string, of which GR00TTransform takes
the string); it is not lower-cased or stripped of punctuation (N1.5 never calls `formalize_language`).
Batches are left-padded with the tokenizer's pad id (`<|endoftext|>` for the Eagle tokenizer).
Tokenized prompts are cached per (language, number of images), since inference asks for the same prompt
at every step.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from typing import Any

import torch

from groot.data.image_ops import model_pixels
from groot.errors import CheckpointError, ObservationError
from groot.model.batch import Batch
from groot.model.config import GR00TN15Config
from groot.model.tokenizer import load_tokenizer

SYSTEM_PROMPT = "You are a helpful assistant."
PASSTHROUGH = {"state": torch.float32, "state_mask": torch.bool, "action": torch.float32,
               "action_mask": torch.bool}


def render_prompt(language: str, num_images: int, num_image_tokens: int) -> str:
    """The chat-template text of one sample, image placeholders already expanded."""
    images = "".join(f"<image {k}><img>" + "<IMG_CONTEXT>" * num_image_tokens + "</img>"
                     for k in range(1, num_images + 1))
    return (f"<|im_start|>system\n{SYSTEM_PROMPT}<|im_end|>\n<|im_start|>user\n{images}{language}"
            "<|im_end|>\n<|im_start|>assistant\n")


class GrootProcessor:
    def __init__(self, tokenizer, image_size: int, num_image_tokens: int, cache_size: int = 256):
        self.tokenizer = tokenizer
        self.image_size = image_size
        self.num_image_tokens = num_image_tokens
        self.cache_size = cache_size
        self._prompt_cache: OrderedDict[tuple[str, int], list[int]] = OrderedDict()

    @classmethod
    def for_config(cls, config: GR00TN15Config, model_dir: str | Path | None = None) -> GrootProcessor:
        """Tokenizer of the config's kind; a checkpoint's `tokenizer/` folder is preferred when present."""
        bb = config.backbone_cfg
        tokenizer_dir = None
        if model_dir is not None:
            model_dir = Path(model_dir)
            tokenizer_dir = model_dir / "tokenizer" if (model_dir / "tokenizer").is_dir() else model_dir
        tokenizer = load_tokenizer(bb.tokenizer, tokenizer_dir)
        if tokenizer.image_token_id != bb.image_token_id:
            raise CheckpointError(tokenizer_dir or f"{bb.tokenizer} tokenizer", "image_token_id",
                                  f"the config's id {bb.image_token_id}", tokenizer.image_token_id)
        return cls(tokenizer, bb.vision.image_size, bb.num_image_tokens)

    def prompt_ids(self, language: str, num_images: int) -> list[int]:
        """Token ids of one sample's prompt (LRU-cached; do not mutate the returned list). `language` must
        be the instruction string: the original's template would print any other object with `str()`
        (`"['pick']"` for a list or array), a form its training never rendered."""
        if not isinstance(language, str):
            raise ObservationError(f"GrootProcessor: language must be the instruction string, found "
                                   f"{type(language).__name__} {language!r}")
        key = (str(language), num_images)
        ids = self._prompt_cache.get(key)
        if ids is not None:
            self._prompt_cache.move_to_end(key)
            return ids
        ids = self.tokenizer.encode(render_prompt(key[0], num_images, self.num_image_tokens))
        found = ids.count(self.tokenizer.image_token_id)
        if found != num_images * self.num_image_tokens:
            raise ObservationError(f"GrootProcessor: the prompt for language {key[0]!r} holds {found} image "
                                   f"tokens (id {self.tokenizer.image_token_id}), expected {num_images} "
                                   f"images x {self.num_image_tokens} (does the language contain "
                                   "<IMG_CONTEXT>?)")
        self._prompt_cache[key] = ids
        if len(self._prompt_cache) > self.cache_size:
            self._prompt_cache.popitem(last=False)
        return ids

    def pad_prompts(self, prompts: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        """Left-pad token ids to the longest prompt with the tokenizer's pad id.
        -> input_ids, attention_mask: int64 [B, L] (mask 1 = prompt token, 0 = padding)"""
        length = max(len(p) for p in prompts)
        input_ids = torch.full((len(prompts), length), self.tokenizer.pad_token_id, dtype=torch.int64)
        attention_mask = torch.zeros((len(prompts), length), dtype=torch.int64)
        for row, prompt in enumerate(prompts):
            input_ids[row, length - len(prompt):] = torch.tensor(prompt, dtype=torch.int64)
            attention_mask[row, length - len(prompt):] = 1
        return input_ids, attention_mask

    def pixels(self, images: Any) -> torch.Tensor:
        """uint8 [N, H, W, 3] -> float32 [N, 3, S, S] in [-1, 1] (`image_ops.model_pixels` without crop:
        frames not S x S are resized like the data transforms do, not tiled as the Eagle processor would)."""
        images = torch.as_tensor(images)
        if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[-1] != 3:
            raise ObservationError(f"images: expected uint8 [N, H, W, 3], found {images.dtype} "
                                   f"{tuple(images.shape)}")
        return model_pixels(images, self.image_size)

    def __call__(self, samples: list[dict[str, Any]]) -> Batch:
        """list of model samples -> host `Batch`; action / action_mask only when the samples carry actions."""
        if not samples:
            raise ObservationError("GrootProcessor: expected at least one sample, found an empty list")
        pixels = [self.pixels(s["images"]) for s in samples]
        prompts = [self.prompt_ids(s["language"], p.shape[0]) for s, p in zip(samples, pixels, strict=True)]
        input_ids, attention_mask = self.pad_prompts(prompts)
        passthrough = {}
        for key, dtype in PASSTHROUGH.items():
            present = [key in s for s in samples]
            if any(present) and not all(present):
                raise ObservationError(f"GrootProcessor: key {key!r} is in {sum(present)} of "
                                       f"{len(samples)} samples; expected all or none")
            if all(present):
                passthrough[key] = torch.stack([torch.as_tensor(s[key]).to(dtype) for s in samples])
        embodiment_id = torch.tensor([int(s["embodiment_id"]) for s in samples], dtype=torch.int64)
        return Batch(torch.cat(pixels), input_ids, attention_mask, embodiment_id, **passthrough)
