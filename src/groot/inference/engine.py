"""InferenceEngine: model samples with raw camera frames -> normalized action chunks, fast.

    engine = InferenceEngine(model.to("cuda", torch.bfloat16), GrootProcessor.for_config(model.config))
    actions = engine.predict(samples)  # [B, 16, 32] on the model's device

Per call (one chunk of at most `max_batch` samples):
1. host: prompt ids from the processor's cache, left-padded to the longest prompt by the processor's
   `pad_prompts`, then right-extended to a length bucket (a multiple of `length_multiple`); the batch is
   padded to a batch bucket by repeating its last sample; everything lands in static device buffers
   (page-locked, asynchronous copies);
2. device: raw uint8 frames -> centre crop -> antialiased resize -> [-1, 1] pixels (`gpu_preprocess`);
3. backbone stage (vision + LLM) and denoising stage (VL self-attention, state token, cross-attention
   K/V once, then all Euler steps) - each one CUDA graph per bucket, captured on first use.

Results equal the eager `GR00TN15.get_action` on the same batch (same noise): the length padding is
hidden by masks (see `fast_forward`), batch padding rows are independent and dropped. Weights are read
when a step count's constants are first built: call `reset()` after changing them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from groot.errors import ObservationError
from groot.inference.cuda_graphs import StageCache
from groot.inference.fast_forward import DenoisingConstants, denoise, key_padding_bias
from groot.inference.gpu_preprocess import PinnedStaging, preprocess_images

DEFAULT_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32)


def _param_dtype(module: torch.nn.Module) -> torch.dtype:
    return next(module.parameters()).dtype


@dataclass
class StaticBuffers:
    """Device inputs / outputs of one (batch bucket, length bucket, images per sample) shape."""

    input_ids: torch.Tensor  # int64 [Bb, Lb]
    token_mask: torch.Tensor  # int64 [Bb, Lb] (1 = prompt token)
    pixels: torch.Tensor  # [Bb * n_img, 3, S, S] vision dtype
    key_bias: torch.Tensor  # [Bb, 1, 1, Lb] head dtype, -inf on the length padding
    state: torch.Tensor  # [Bb, 1, 64] head dtype
    embodiment_id: torch.Tensor  # int64 [Bb]
    noise: torch.Tensor  # [Bb, 16, 32] head dtype
    features: torch.Tensor  # [Bb, Lb, D_llm] head dtype (backbone output, head input)


@dataclass
class StagedBatch:
    """One chunk in its static buffers, ready for `encode` and `denoise`."""

    shape_key: tuple[int, int, int]  # (batch bucket, length bucket, images per sample)
    buffers: StaticBuffers
    batch_size: int
    prompt_length: int
    left_padded: bool  # some prompt is shorter than the longest: the LLM needs the padding mask
    category: int | None  # the single embodiment of the chunk, None when mixed


class InferenceEngine:
    def __init__(self, model, processor, max_batch: int = 32,
                 batch_buckets: Sequence[int] = DEFAULT_BATCH_BUCKETS, length_multiple: int = 32,
                 crop_scale: float | None = 0.95, use_cuda_graphs: bool = True):
        """model: GR00TN15 (put in eval mode); processor: GrootProcessor (prompt ids);
        crop_scale: centre-crop fraction applied to raw frames, None when samples carry model-size
        images already transformed."""
        self.model = model.eval()
        self.processor = processor
        self.max_batch = max_batch
        self.batch_buckets = sorted({b for b in batch_buckets if b < max_batch} | {max_batch})
        self.length_multiple = length_multiple
        self.crop_scale = crop_scale
        self.device = next(model.parameters()).device
        self.vision_dtype = _param_dtype(model.backbone.eagle_model.vision_model)
        self.head_dtype = _param_dtype(model.action_head)
        self.staging = PinnedStaging(self.device)
        self.stages = StageCache(self.device, use_cuda_graphs)
        self._buffers: dict[tuple[int, int, int], StaticBuffers] = {}
        self._constants: dict[int, DenoisingConstants] = {}

    # ---- public API --------------------------------------------------------------------------------
    @torch.inference_mode()
    def predict(self, samples: Sequence[dict[str, Any]], noise: torch.Tensor | None = None,
                num_steps: int | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
        """Model samples (images uint8 [T*V, H, W, 3] at raw resolution) -> normalized actions
        [B, 16, 32] in the head's dtype on the model's device. `noise` [B, 16, 32] replaces the draw
        (otherwise one `torch.randn` per chunk, like the eager model)."""
        if not samples:
            raise ObservationError("InferenceEngine.predict: expected at least one sample, found none")
        chunks = []
        for start in range(0, len(samples), self.max_batch):
            part = samples[start:start + self.max_batch]
            part_noise = None if noise is None else noise[start:start + len(part)]
            staged = self.stage(part, part_noise, generator)
            self.encode(staged)
            chunks.append(self.denoise(staged, num_steps))
        return torch.cat(chunks)

    @torch.inference_mode()
    def stage(self, samples: Sequence[dict[str, Any]], noise: torch.Tensor | None = None,
              generator: torch.Generator | None = None) -> StagedBatch:
        """Host work + uploads + GPU image preprocessing for at most `max_batch` samples."""
        batch = len(samples)
        if not 0 < batch <= self.max_batch:
            raise ObservationError(f"InferenceEngine.stage: expected 1..{self.max_batch} samples, "
                                   f"found {batch}")
        num_images = self._images_per_sample(samples)
        prompt_ids, prompt_mask = self.processor.pad_prompts(
            [self.processor.prompt_ids(s["language"], num_images) for s in samples])  # [B, L]
        length = prompt_ids.shape[1]
        bucket_b = next(b for b in self.batch_buckets if b >= batch)
        bucket_l = self.length_multiple * math.ceil(length / self.length_multiple)
        key = (bucket_b, bucket_l, num_images)
        if key not in self._buffers:
            self._buffers[key] = self._allocate(key)
        buffers = self._buffers[key]

        rows = [*range(batch)] + [batch - 1] * (bucket_b - batch)  # batch padding repeats the last sample
        # the length bucket extends every prompt on the right (hidden from real tokens by causality and
        # from the head by `key_bias`)
        ids = F.pad(prompt_ids, (0, bucket_l - length), value=self.processor.tokenizer.pad_token_id)[rows]
        mask = F.pad(prompt_mask, (0, bucket_l - length))[rows]  # [Bb, Lb]
        self.model.backbone.check_image_tokens(ids, bucket_b * num_images)
        states = [np.asarray(samples[r]["state"], dtype=np.float32) for r in rows]
        embodiments = np.array([int(samples[r]["embodiment_id"]) for r in rows], dtype=np.int64)
        self.staging.upload_into(buffers.input_ids, ids.numpy())
        self.staging.upload_into(buffers.token_mask, mask.numpy())
        self.staging.upload_into(buffers.state, states)
        self.staging.upload_into(buffers.embodiment_id, embodiments)
        buffers.key_bias.copy_(key_padding_bias(length, bucket_l, bucket_b, self.head_dtype, self.device))

        raw = self.staging.upload([np.asarray(s["images"]) for s in samples])  # uint8 [B, n_img, H, W, 3]
        pixels = buffers.pixels.view(bucket_b, num_images, *buffers.pixels.shape[1:])
        pixels[:batch] = preprocess_images(raw, self.processor.image_size, self.crop_scale, self.vision_dtype)
        pixels[batch:] = pixels[batch - 1:batch]

        action_shape = tuple(buffers.noise.shape[1:])
        if noise is None:
            noise = torch.randn((batch, *action_shape), dtype=self.head_dtype, device=self.device,
                                generator=generator)
        elif tuple(noise.shape) != (batch, *action_shape):
            raise ObservationError(f"InferenceEngine: noise: expected shape {[batch, *action_shape]}, "
                                   f"found {list(noise.shape)}")
        buffers.noise[:batch].copy_(noise)
        buffers.noise[batch:].zero_()
        category = int(embodiments[0]) if (embodiments == embodiments[0]).all() else None
        return StagedBatch(key, buffers, batch, length, bool((prompt_mask == 0).any()), category)

    @torch.inference_mode()
    def encode(self, staged: StagedBatch) -> torch.Tensor:
        """Backbone stage: static pixels + prompt -> `staged.buffers.features` [Bb, Lb, D]."""
        key = ("backbone", staged.shape_key, staged.left_padded)
        buffers, left_padded = staged.buffers, staged.left_padded
        backbone = self.model.backbone

        def build():
            def run() -> torch.Tensor:
                mask = buffers.token_mask if left_padded else None
                return buffers.features.copy_(backbone(buffers.pixels, buffers.input_ids, mask))
            return run

        return self.stages.get(key, build)()

    @torch.inference_mode()
    def denoise(self, staged: StagedBatch, num_steps: int | None = None) -> torch.Tensor:
        """Denoising stage: features + state + noise -> normalized actions [B, 16, 32] (a copy)."""
        steps = num_steps or self.model.action_head.cfg.num_inference_timesteps
        consts = self._constants.get(steps)
        if consts is None:
            consts = self._constants[steps] = DenoisingConstants.build(self.model.action_head, steps)
        key = ("denoise", staged.shape_key, staged.category, steps)
        buffers, head = staged.buffers, self.model.action_head
        category = buffers.embodiment_id if staged.category is None else staged.category

        def build():
            def run() -> torch.Tensor:
                return denoise(head, consts, buffers.features, buffers.key_bias, buffers.state,
                               buffers.noise, category)
            return run

        return self.stages.get(key, build)()[:staged.batch_size].clone()

    def reset(self) -> None:
        """Drop captured graphs, buffers and per-step constants (after the weights changed)."""
        self.stages.clear()
        self._buffers.clear()
        self._constants.clear()

    # ---- helpers -----------------------------------------------------------------------------------
    @staticmethod
    def _images_per_sample(samples: Sequence[dict[str, Any]]) -> int:
        shapes = [tuple(np.shape(s["images"])) for s in samples]
        if len(set(shapes)) > 1 or len(shapes[0]) != 4 or shapes[0][-1] != 3:
            raise ObservationError(f"InferenceEngine: images: expected one uint8 [T*V, H, W, 3] shape "
                                   f"for all samples of a batch, found {sorted(set(shapes))}")
        return shapes[0][0]

    def _allocate(self, key: tuple[int, int, int]) -> StaticBuffers:
        bucket_b, bucket_l, num_images = key
        head_cfg = self.model.action_head.cfg
        size = self.processor.image_size
        hidden = self.model.backbone.cfg.llm.hidden_size

        def empty(shape, dtype):
            return torch.zeros(shape, dtype=dtype, device=self.device)

        return StaticBuffers(
            input_ids=empty((bucket_b, bucket_l), torch.int64),
            token_mask=empty((bucket_b, bucket_l), torch.int64),
            pixels=empty((bucket_b * num_images, 3, size, size), self.vision_dtype),
            key_bias=empty((bucket_b, 1, 1, bucket_l), self.head_dtype),
            state=empty((bucket_b, 1, head_cfg.max_state_dim), self.head_dtype),
            embodiment_id=empty((bucket_b,), torch.int64),
            noise=empty((bucket_b, head_cfg.action_horizon, head_cfg.action_dim), self.head_dtype),
            features=empty((bucket_b, bucket_l, hidden), self.head_dtype),
        )
