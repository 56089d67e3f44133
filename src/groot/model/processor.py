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

N1.6 (`GrootN16Processor`, the layout of `Gr00tN1d6Processor`, NVIDIA/Isaac-GR00T @ 005e8a4f
`gr00t/model/gr00t_n1d6/processing_gr00t_n1d6.py` with the vendored Eagle-Block2A chat template): one
user message holds the text, then the images; no generation prompt; the text is "formalized" (lower
case, every character matching `[^\\w\\s]` removed) when the config's `formalize_language`:

    <|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n{text}
    <image 1><img><IMG_CONTEXT>x n</img><image 2><img>...</img><|im_end|>\n

Images keep their own size: n = H * W / (patch * pixel_unshuffle)^2 (81 for 252 x 252, 108 for
252 x 336); a side that is not a multiple of patch * pixel_unshuffle is first brought to one by the Eagle
processor's `smart_resize` (`groot.model.native_resolution`). All images of a batch share one size.

Tokenized prompts are cached per (language, number of images, image tokens per image), since inference
asks for the same prompt at every step.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from pathlib import Path
from typing import Any

import torch

from groot.data.image_ops import ImageGeometry, model_pixels, to_model_pixels
from groot.errors import CheckpointError, ObservationError
from groot.model.batch import Batch
from groot.model.config import GR00TN15Config
from groot.model.native_resolution import resize_to_grid, smart_resize
from groot.model.tokenizer import load_tokenizer

SYSTEM_PROMPT = "You are a helpful assistant."
PASSTHROUGH = {"state": torch.float32, "state_mask": torch.bool, "action": torch.float32,
               "action_mask": torch.bool}


SYSTEM_TURN = f"<|im_start|>system\n{SYSTEM_PROMPT}<|im_end|>\n"
NOT_WORD_OR_SPACE = re.compile(r"[^\w\s]")


def image_blocks(num_images: int, num_image_tokens: int) -> str:
    """`<image k><img>` + `<IMG_CONTEXT>` x num_image_tokens + `</img>` for k = 1 .. num_images."""
    return "".join(f"<image {k}><img>" + "<IMG_CONTEXT>" * num_image_tokens + "</img>"
                   for k in range(1, num_images + 1))


def render_prompt(language: str, num_images: int, num_image_tokens: int) -> str:
    """N1.5: the chat-template text of one sample (images, then text, then the generation prompt),
    image placeholders already expanded."""
    return (f"{SYSTEM_TURN}<|im_start|>user\n{image_blocks(num_images, num_image_tokens)}{language}"
            "<|im_end|>\n<|im_start|>assistant\n")


def render_n16_prompt(text: str, num_images: int, num_image_tokens: int) -> str:
    """N1.6: the chat-template text of one sample (text, then images, no generation prompt), image
    placeholders already expanded."""
    return f"{SYSTEM_TURN}<|im_start|>user\n{text}{image_blocks(num_images, num_image_tokens)}<|im_end|>\n"


def formalize_language(text: str) -> str:
    """The original N1.6's instruction clean-up: lower case, then every character matching `[^\\w\\s]`
    removed ("Pick up the Ketchup!" -> "pick up the ketchup")."""
    return NOT_WORD_OR_SPACE.sub("", text.lower())


class GrootProcessor:
    """N1.5 processor: every image resized to `image_size` and given `num_image_tokens` tokens, prompt of
    `render_prompt`. `for_config` picks the processor of the config's generation. The N1.6 subclass
    overrides the four generation hooks: `instruction`, `render`, `pixels`, `image_tokens`."""

    def __init__(self, tokenizer, image_size: int | None, num_image_tokens: int | None,
                 cache_size: int = 256):
        self.tokenizer = tokenizer
        self.image_size = image_size  # None: images keep their own size (N1.6)
        self.num_image_tokens = num_image_tokens  # None: follows each batch's image size (N1.6)
        self.cache_size = cache_size
        self._prompt_cache: OrderedDict[tuple[str, int, int], list[int]] = OrderedDict()

    @classmethod
    def for_config(cls, config: GR00TN15Config, model_dir: str | Path | None = None) -> GrootProcessor:
        """The processor of the config's generation (`config.generation`: "n1.5" or "n1.6") with the
        tokenizer of the config's kind; a checkpoint's `tokenizer/` folder is preferred when present."""
        bb = config.backbone_cfg
        tokenizer_dir = None
        if model_dir is not None:
            model_dir = Path(model_dir)
            tokenizer_dir = model_dir / "tokenizer" if (model_dir / "tokenizer").is_dir() else model_dir
        tokenizer = load_tokenizer(bb.tokenizer, tokenizer_dir)
        if tokenizer.image_token_id != bb.image_token_id:
            raise CheckpointError(tokenizer_dir or f"{bb.tokenizer} tokenizer", "image_token_id",
                                  f"the config's id {bb.image_token_id}", tokenizer.image_token_id)
        if config.generation == "n1.6":
            return GrootN16Processor(tokenizer, bb.vision.patch_size * bb.pixel_unshuffle,
                                     config.formalize_language)
        return GrootProcessor(tokenizer, bb.vision.image_size, bb.num_image_tokens)

    # ---- generation hooks --------------------------------------------------------------------------
    def instruction(self, language: str) -> str:
        """The text the prompt holds for `language` (N1.5: verbatim)."""
        return language

    def render(self, text: str, num_images: int, num_image_tokens: int) -> str:
        return render_prompt(text, num_images, num_image_tokens)

    def pixels(self, images: Any) -> torch.Tensor:
        """uint8 [N, H, W, 3] -> float32 [N, 3, S, S] in [-1, 1] (`image_ops.model_pixels` without crop:
        frames not S x S are resized like the data transforms do, not tiled as the Eagle processor would)."""
        return model_pixels(checked_images(images), self.image_size)

    def image_tokens(self, height: int, width: int) -> int:
        """Image tokens of one image that reaches the processor at height x width (N1.5: the fixed
        count)."""
        return self.num_image_tokens

    def takes_as_is(self, geometry: ImageGeometry) -> bool:
        """Whether images of this crop and resize reach the model without another resize here."""
        return geometry.resize == "square" and geometry.size == self.image_size

    # ---- shared ------------------------------------------------------------------------------------
    def prompt_ids(self, language: str, num_images: int, num_image_tokens: int | None = None) -> list[int]:
        """Token ids of one sample's prompt (LRU-cached; do not mutate the returned list).
        num_image_tokens: per image; None = the processor's fixed count (N1.6 has none: pass it).
        `language` must be the instruction string: the original's template would print any other object
        with `str()` (`"['pick']"` for a list or array), a form its training never rendered."""
        if not isinstance(language, str):
            raise ObservationError(f"GrootProcessor: language must be the instruction string, found "
                                   f"{type(language).__name__} {language!r}")
        per_image = self.num_image_tokens if num_image_tokens is None else num_image_tokens
        if per_image is None:
            raise ObservationError("GrootProcessor: the image-token count follows the image size here; "
                                   "expected num_image_tokens, found None")
        key = (str(language), num_images, per_image)
        ids = self._prompt_cache.get(key)
        if ids is not None:
            self._prompt_cache.move_to_end(key)
            return ids
        ids = self.tokenizer.encode(self.render(self.instruction(key[0]), num_images, per_image))
        found = ids.count(self.tokenizer.image_token_id)
        if found != num_images * per_image:
            raise ObservationError(f"GrootProcessor: the prompt for language {key[0]!r} holds {found} image "
                                   f"tokens (id {self.tokenizer.image_token_id}), expected {num_images} "
                                   f"images x {per_image} (does the language contain <IMG_CONTEXT>?)")
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

    def __call__(self, samples: list[dict[str, Any]]) -> Batch:
        """list of model samples -> host `Batch`; action / action_mask only when the samples carry actions.
        Every image of the batch must come out at one size (one pixel tensor)."""
        if not samples:
            raise ObservationError("GrootProcessor: expected at least one sample, found an empty list")
        pixels = [self.pixels(s["images"]) for s in samples]
        sizes = [tuple(p.shape[-2:]) for p in pixels if p.shape[0]]
        if len(set(sizes)) > 1:
            raise ObservationError(f"GrootProcessor: expected every image of a batch at one size, found "
                                   f"H x W = {sorted(set(sizes))}")
        prompts = [self.prompt_ids(s["language"], p.shape[0], self.image_tokens(*p.shape[-2:]))
                   for s, p in zip(samples, pixels, strict=True)]
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


class GrootN16Processor(GrootProcessor):
    """N1.6 processor: text-first prompt without generation prompt (`render_n16_prompt`), formalized
    language when `formalize`, images at their own size brought to multiples of `grid`
    (= patch * pixel_unshuffle, 28) by `smart_resize`, H * W / grid^2 tokens per image."""

    def __init__(self, tokenizer, grid: int, formalize: bool = True, cache_size: int = 256):
        super().__init__(tokenizer, image_size=None, num_image_tokens=None, cache_size=cache_size)
        self.grid = grid
        self.formalize = formalize

    def instruction(self, language: str) -> str:
        return formalize_language(language) if self.formalize else language

    def render(self, text: str, num_images: int, num_image_tokens: int) -> str:
        return render_n16_prompt(text, num_images, num_image_tokens)

    def pixels(self, images: Any) -> torch.Tensor:
        """uint8 [N, H, W, 3] -> float32 [N, 3, H', W'] in [-1, 1], (H', W') = smart_resize(H, W)
        (= (H, W) when both are multiples of `grid`)."""
        return to_model_pixels(resize_to_grid(checked_images(images), self.grid))

    def takes_as_is(self, geometry: ImageGeometry) -> bool:
        return geometry.resize == "shortest_edge" and geometry.multiple % self.grid == 0

    def image_tokens(self, height: int, width: int) -> int:
        """H' * W' / grid^2 at (H', W') = smart_resize(height, width)."""
        grid_h, grid_w = smart_resize(height, width, self.grid)
        return grid_h * grid_w // self.grid**2


def checked_images(images: Any) -> torch.Tensor:
    """The images of one sample as a uint8 [N, H, W, 3] tensor, else ObservationError."""
    images = torch.as_tensor(images)
    if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        raise ObservationError(f"images: expected uint8 [N, H, W, 3], found {images.dtype} "
                               f"{tuple(images.shape)}")
    return images
