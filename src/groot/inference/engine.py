"""InferenceEngine: model samples with raw camera frames -> normalized action chunks, through CUDA graphs.

    engine = InferenceEngine(model.to("cuda", torch.bfloat16), GrootProcessor.for_config(model.config))
    actions = engine.predict(samples)  # [B, T_a, A] (N1.5: [B, 16, 32]) on the model's device

The model's own modules run as two CUDA graphs per input shape (backbone: uint8 frames -> crop and
resize (the data config's `ImageGeometry`), vision tower, LLM; denoising: VL self-attention,
cross-attention K/V, every Euler step) on a private copy of the module tree that shares the parameters
(`engine_copy`): fused projections and compiled blocks are substituted there, never in the caller's
model. Each prompt length gets its own graphs (the `max_shapes` most recently used are kept); batches
are padded up to a bucket, the padding rows dropped. With `exact=True` (default) and no `compile`, the
actions at a bucket batch size are bit-identical to the model's `get_action` on the same pixels and
noise; `exact=False` (no LLM mask when nothing is padded) and `compile=True` (`regional_compile`)
change rounding. Weights are read when graphs are first built: call `reset()` after changing them. Both
generations run here: N1.6 frames keep their aspect ratio, so their image-token count follows the frame
size.
"""

from __future__ import annotations

import copy
import itertools
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from groot.data import image_ops
from groot.errors import ObservationError
from groot.inference.cuda_graphs import CapturedStage, graph_pool
from groot.inference.fusion import fuse_projections
from groot.inference.gpu_preprocess import PackedUpload
from groot.inference.regional_compile import compile_blocks
from groot.model.action_head import StepConditioning

DEFAULT_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32)


def _param_dtype(module: torch.nn.Module) -> torch.dtype:
    return next(module.parameters()).dtype


def release_geometry(config) -> image_ops.ImageGeometry:
    """The original's eval crop and resize for a model config's generation: N1.5 centre crop 0.95 and
    a square of the vision tower's size; N1.6 its shortest edge and crop, sides multiples of
    patch x pixel_unshuffle."""
    vision = config.backbone_cfg.vision
    if config.generation == "n1.6":
        return image_ops.ImageGeometry("shortest_edge", config.crop_fraction, config.shortest_image_edge,
                                       vision.patch_size * config.backbone_cfg.pixel_unshuffle)
    return image_ops.ImageGeometry("square", 0.95, vision.image_size)


def engine_copy(model: torch.nn.Module) -> torch.nn.Module:
    """The module tree of `model` copied, sharing its parameters and buffers (no weight memory): modules
    may be substituted in the copy without touching `model`."""
    shared = {id(tensor): tensor for tensor in itertools.chain(model.parameters(), model.buffers())}
    return copy.deepcopy(model, memo=shared)


@dataclass(frozen=True)
class ShapeKey:
    batch: int  # batch bucket
    length: int  # prompt length: the longest prompt
    num_images: int  # images per sample (T*V)
    frame: tuple[int, int]  # raw frame height, width


@dataclass
class PromptBlock:
    """The token ids of one chunk's instructions, padded to the chunk's shape (host arrays)."""

    input_ids: np.ndarray  # int64 [Bb, L] (left padding to the longest)
    token_mask: np.ndarray  # int64 [Bb, L] (1 = prompt token)
    length: int  # the longest prompt
    left_padded: bool  # some prompt is shorter than the longest


@dataclass
class ShapeSlot:
    """Static device inputs of one input shape and the captured stages that read them."""

    upload: PackedUpload  # "images" uint8 [Bb, n_img, H, W, 3], "state" float32 [Bb, 1, max_state_dim]
    input_ids: torch.Tensor  # int64 [Bb, L]
    token_mask: torch.Tensor  # int64 [Bb, L]
    embodiment_id: torch.Tensor  # int64 [Bb]
    noise: torch.Tensor  # [Bb, T, A] head dtype
    prompt: tuple | None = None  # the (languages, ...) whose ids are loaded
    embodiments: tuple[int, ...] | None = None  # the ids loaded
    features: dict[bool, torch.Tensor] = field(default_factory=dict)  # backbone output per mask use
    pixels: dict[bool, torch.Tensor] = field(default_factory=dict)  # [Bb * n_img, 3, H', W']
    stages: dict[tuple, CapturedStage] = field(default_factory=dict)


@dataclass
class StagedBatch:
    """One chunk in its slot's static buffers, ready for `encode` and `denoise`."""

    key: ShapeKey
    slot: ShapeSlot
    batch_size: int
    prompt_length: int
    left_padded: bool  # some prompt is shorter than the longest
    llm_mask: bool  # the LLM takes the padding mask (exact mode, or some prompt is left-padded)
    category: int | None  # the single embodiment of the chunk, None when mixed


class InferenceEngine:
    def __init__(self, model, processor, max_batch: int = 32,
                 batch_buckets: Sequence[int] = DEFAULT_BATCH_BUCKETS,
                 geometry: image_ops.ImageGeometry | None = None, use_cuda_graphs: bool = True,
                 exact: bool = True, fuse_projections: bool = True, compile: bool = False,
                 max_shapes: int = 8,
                 max_prompt_blocks: int = 256, compile_backend: str | Callable = "inductor"):
        """model: GR00TN15 (put in eval mode; its modules are never replaced);
        processor: GrootProcessor (prompt ids);
        geometry: the crop and resize of raw frames (the data config's `image_geometry()`; None: the
        original's for the model's generation, `release_geometry`);
        exact: the eager model's numerics (bit-identical results) or faster attention kernels;
        fuse_projections: one GEMM per group of same-input projections;
        compile: run the repeated transformer blocks compiled (`compile_blocks`, backend
        `compile_backend`); max_shapes: input shapes whose buffers and graphs are kept (least recently
        used dropped)."""
        self.model = model.eval()
        self.processor = processor
        self.max_batch = max_batch
        self.batch_buckets = sorted({b for b in batch_buckets if b < max_batch} | {max_batch})
        self.geometry = geometry or release_geometry(model.config)
        self.exact = exact
        self.fuse_projections = fuse_projections
        self.max_shapes = max_shapes
        self.max_prompt_blocks = max_prompt_blocks
        self.device = next(model.parameters()).device
        self.use_cuda_graphs = use_cuda_graphs and self.device.type == "cuda"
        self.vision_dtype = _param_dtype(model.backbone.vlm.vision_model)
        self.head_dtype = _param_dtype(model.action_head)
        self.pool = graph_pool(self.device, self.use_cuda_graphs)
        self.compile = compile
        self.compile_backend = compile_backend
        self.fast_model, self.compiled_blocks = self._fast_model()
        self._slots: OrderedDict[ShapeKey, ShapeSlot] = OrderedDict()
        self._prompts: OrderedDict[tuple, PromptBlock] = OrderedDict()
        self._conditionings: dict[tuple[int, int], list[StepConditioning]] = {}

    # ---- public API --------------------------------------------------------------------------------
    @torch.inference_mode()
    def predict(self, samples: Sequence[dict[str, Any]], noise: torch.Tensor | None = None,
                num_steps: int | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
        """Model samples (images uint8 [T*V, H, W, 3] at raw resolution) -> normalized actions
        [B, T_a, A] (the head's horizon and action width) in the head's dtype on the model's device.
        `noise` [B, T_a, A] replaces the draw
        (otherwise one `torch.randn` per chunk of at most `max_batch`, like the eager model)."""
        if not samples:
            raise ObservationError("InferenceEngine.predict: expected at least one sample, found none")
        if noise is not None and noise.shape[0] != len(samples):
            raise ObservationError(f"InferenceEngine: noise: expected {len(samples)} rows (one per sample), "
                                   f"found shape {list(noise.shape)}")
        chunks = []
        for start in range(0, len(samples), self.max_batch):
            part = samples[start:start + self.max_batch]
            part_noise = None if noise is None else noise[start:start + len(part)]
            staged = self.stage(part, part_noise, generator)
            self.encode(staged)
            chunks.append(self.denoise(staged, num_steps))
        return chunks[0] if len(chunks) == 1 else torch.cat(chunks)

    @torch.inference_mode()
    def stage(self, samples: Sequence[dict[str, Any]], noise: torch.Tensor | None = None,
              generator: torch.Generator | None = None) -> StagedBatch:
        """Host work and uploads for at most `max_batch` samples."""
        batch = len(samples)
        if not 0 < batch <= self.max_batch:
            raise ObservationError(f"InferenceEngine.stage: expected 1..{self.max_batch} samples, "
                                   f"found {batch}")
        num_images, frame = self._frame_shape(samples)
        bucket_b = next(b for b in self.batch_buckets if b >= batch)
        languages = tuple(str(s["language"]) for s in samples)
        prompt_key = (languages, num_images, self.processor.image_tokens(*self.geometry.output_size(*frame)),
                      bucket_b)
        prompt = self._prompt_block(prompt_key)
        key = ShapeKey(bucket_b, prompt.input_ids.shape[1], num_images, frame)
        slot = self._slot(key)
        if slot.prompt != prompt_key:
            slot.input_ids.copy_(torch.from_numpy(prompt.input_ids))
            slot.token_mask.copy_(torch.from_numpy(prompt.token_mask))
            slot.prompt = prompt_key
        embodiments = tuple(int(s["embodiment_id"]) for s in samples)
        if slot.embodiments != embodiments:
            padded = embodiments + embodiments[-1:] * (bucket_b - batch)
            slot.embodiment_id.copy_(torch.tensor(padded, dtype=torch.int64))
            slot.embodiments = embodiments
        slot.upload.write("images", [s["images"] for s in samples])
        slot.upload.write("state", [s["state"] for s in samples])
        slot.upload.send()
        self._load_noise(slot.noise, batch, noise, generator)
        category = embodiments[0] if len(set(embodiments)) == 1 else None
        llm_mask = self.exact or prompt.left_padded
        return StagedBatch(key, slot, batch, prompt.length, prompt.left_padded, llm_mask, category)

    @torch.inference_mode()
    def encode(self, staged: StagedBatch) -> torch.Tensor:
        """Backbone stage: static frames + prompt -> features [Bb, L, D] (the stage's output buffer)."""
        slot, use_mask = staged.slot, staged.llm_mask
        backbone = self.fast_model.backbone

        def run() -> tuple[torch.Tensor, torch.Tensor]:
            images = slot.upload.fields["images"]  # uint8 [Bb, n_img, H, W, 3]
            pixels = image_ops.to_model_pixels(self.geometry(images), self.vision_dtype).flatten(0, 1)
            features = backbone(pixels, slot.input_ids, slot.token_mask if use_mask else None)
            return features.to(self.head_dtype), pixels

        slot.features[use_mask], slot.pixels[use_mask] = self._stage(slot, ("backbone", use_mask), run)()
        return slot.features[use_mask]

    @torch.inference_mode()
    def denoise(self, staged: StagedBatch, num_steps: int | None = None) -> torch.Tensor:
        """Denoising stage: features + state + noise -> normalized actions [B, T_a, A] (a copy)."""
        head, slot = self.fast_model.action_head, staged.slot
        steps = num_steps or head.cfg.num_inference_timesteps
        conditionings = self._step_conditionings(steps, staged.key.batch)
        use_mask = staged.llm_mask
        category = staged.category

        def run() -> torch.Tensor:
            state = slot.upload.fields["state"].to(self.head_dtype)  # [Bb, 1, max_state_dim]
            embodiment = slot.embodiment_id if category is None else category
            vl = head.encode_vl(slot.features[use_mask])
            vl_masks = self.model.token_masks(slot.input_ids, slot.token_mask)  # N1.6; None for N1.5
            return head.integrate(vl, state, slot.noise, embodiment, conditionings, vl_masks)

        actions = self._stage(slot, ("denoise", use_mask, category, steps), run)()
        return actions[:staged.batch_size].clone()

    def pixels(self, staged: StagedBatch) -> torch.Tensor:
        """The model pixels the last `encode` of this shape computed. -> [B * n_img, 3, H', W']"""
        return staged.slot.pixels[staged.llm_mask][:staged.batch_size * staged.key.num_images]

    def reset(self) -> None:
        """Drop graphs, buffers, fused weights and step conditionings (after the weights changed)."""
        self._slots.clear()
        self._conditionings.clear()
        self.fast_model, self.compiled_blocks = self._fast_model()

    @property
    def captured_graphs(self) -> int:
        return sum(stage.graph is not None for slot in self._slots.values() for stage in slot.stages.values())

    # ---- helpers -----------------------------------------------------------------------------------
    def _fast_model(self) -> tuple[torch.nn.Module, dict[type, list[torch.nn.Module]]]:
        """A copy of the model (`engine_copy`) with fused projections and compiled blocks substituted
        as configured -> (the copy, its compiled blocks per kind)."""
        fast = engine_copy(self.model)
        if self.fuse_projections:
            fuse_projections(fast)
        return fast, compile_blocks(fast, self.compile_backend) if self.compile else {}

    def _stage(self, slot: ShapeSlot, key: tuple, fn) -> CapturedStage:
        stage = slot.stages.get(key)
        if stage is None:
            stage = CapturedStage(fn, self.device, self.use_cuda_graphs, self.pool)
            slot.stages[key] = stage
        return stage

    @staticmethod
    def _frame_shape(samples: Sequence[dict[str, Any]]) -> tuple[int, tuple[int, int]]:
        shapes = {(np.shape(s["images"]), np.asarray(s["images"]).dtype) for s in samples}
        shape, dtype = next(iter(shapes))
        if len(shapes) > 1 or len(shape) != 4 or shape[-1] != 3 or dtype != np.uint8:
            found = sorted(f"{dt} {list(sh)}" for sh, dt in shapes)
            raise ObservationError(f"InferenceEngine: images: expected one uint8 [T*V, H, W, 3] shape for "
                                   f"all samples of a batch, found {found}")
        return shape[0], (shape[1], shape[2])

    def _prompt_block(self, key: tuple) -> PromptBlock:
        """(languages, images per sample, image tokens per image, batch bucket) -> padded ids, cached
        (LRU)."""
        block = self._prompts.get(key)
        if block is not None:
            self._prompts.move_to_end(key)
            return block
        languages, num_images, per_image, bucket_b = key
        ids, mask = self.processor.pad_prompts([self.processor.prompt_ids(t, num_images, per_image)
                                                for t in languages])
        length = ids.shape[1]
        rows = [*range(len(languages))] + [len(languages) - 1] * (bucket_b - len(languages))
        ids, mask = ids[rows], mask[rows]  # [Bb, L]
        self.model.backbone.check_image_tokens(ids, bucket_b * num_images, per_image)
        left_padded = bool((mask == 0).any())
        block = PromptBlock(ids.numpy(), mask.numpy(), length, left_padded)
        self._prompts[key] = block
        if len(self._prompts) > self.max_prompt_blocks:
            self._prompts.popitem(last=False)
        return block

    def _slot(self, key: ShapeKey) -> ShapeSlot:
        slot = self._slots.get(key)
        if slot is not None:
            self._slots.move_to_end(key)
            return slot
        head_cfg = self.model.action_head.cfg
        height, width = key.frame
        upload = PackedUpload({
            "images": ((key.batch, key.num_images, height, width, 3), torch.uint8),
            "state": ((key.batch, 1, head_cfg.max_state_dim), torch.float32),
        }, self.device)

        def zeros(shape, dtype):
            return torch.zeros(shape, dtype=dtype, device=self.device)

        slot = ShapeSlot(
            upload=upload,
            input_ids=zeros((key.batch, key.length), torch.int64),
            token_mask=zeros((key.batch, key.length), torch.int64),
            embodiment_id=zeros((key.batch,), torch.int64),
            noise=zeros((key.batch, head_cfg.action_horizon, head_cfg.action_dim), self.head_dtype),
        )
        self._slots[key] = slot
        if len(self._slots) > self.max_shapes:
            self._slots.popitem(last=False)
        return slot

    def _step_conditionings(self, steps: int, batch: int) -> list[StepConditioning]:
        conditionings = self._conditionings.get((steps, batch))
        if conditionings is None:
            conditionings = self.model.action_head.denoising_conditionings(steps, batch, self.device)
            self._conditionings[(steps, batch)] = conditionings
        return conditionings

    def _load_noise(self, target: torch.Tensor, batch: int, noise: torch.Tensor | None,
                    generator: torch.Generator | None) -> None:
        """noise [B, T, A] -> target[:B]; None draws it there exactly as the eager model's
        `torch.randn((B, T, A), dtype, device, generator)` would."""
        if noise is None:
            target[:batch].normal_(generator=generator)
            return
        if tuple(noise.shape) != (batch, *target.shape[1:]):
            raise ObservationError(f"InferenceEngine: noise: expected shape {[batch, *target.shape[1:]]}, "
                                   f"found {list(noise.shape)}")
        target[:batch].copy_(noise)
