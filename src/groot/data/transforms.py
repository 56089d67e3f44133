"""Transforms from a raw step dict to the model sample, and back for actions (spec 7.1, 7.3).

A raw step (from `GrootDataset.raw_step` or a robot observation) holds `video.<k>` uint8 [T, H, W, 3],
`state.<k>` / `action.<k>` [T, D] and `annotation.<...>` texts. The chain built by
`DataConfig.transform()` is

    VideoTransform -> [RelativeAction] -> StateActionTransform | StateActionSinCos (state)
    -> StateActionTransform (action) -> Concat -> GR00TPack

and `GR00TPack` emits the model sample of docs/ARCHITECTURE.md. `unapply` runs the chain backwards on
`{"action": [..., H, A]}` (H >= the config's horizon T, A >= its action width; plus `reference_state` when
the config has relative actions) and returns `{"action.<k>": [..., T, D_k]}` in original units.
Every transform is cheap per sample: numpy / torch vector ops per key, no per-dim Python loops.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from groot.data import image_ops
from groot.data.embodiment import embodiment_index
from groot.data.metadata import RELATIVE_ACTION, DatasetMetadata
from groot.data.rotation import convert_rotation, rotation_dim
from groot.errors import DatasetError, ObservationError

NORMALIZATION_MODES = ("min_max", "q99", "mean_std", "binary", "scale")
REFERENCE_STATE = "reference_state"  # unapply input: {full state key: raw last observed state [..., D]}
DEFAULT_INSTRUCTION = "Perform the default behavior."
# an absolute rotation converted to another representation is min-max normalized with these bounds
FIXED_ROTATION_BOUNDS = {"rotation_6d": 1.0, "quaternion": 1.0, "matrix": 1.0, "axis_angle": np.pi}
EULER_BOUND = np.pi


def split_key(key: str) -> tuple[str, str]:
    """"state.left_arm" -> ("state", "left_arm")."""
    group, _, name = key.partition(".")
    if not name:
        raise ValueError(f"expected a full key such as 'state.left_arm', found {key!r}")
    return group, name


class Transform:
    """One step of the chain. `set_metadata` before use; `train()` (the default) enables augmentation."""

    def __init__(self) -> None:
        self.training = True
        self.metadata: DatasetMetadata | None = None

    def set_metadata(self, metadata: DatasetMetadata) -> None:
        self.metadata = metadata

    def train(self) -> Transform:
        self.training = True
        return self

    def eval(self) -> Transform:
        self.training = False
        return self

    def apply(self, step: dict[str, Any]) -> dict[str, Any]:
        raise NotImplementedError

    def unapply(self, step: dict[str, Any]) -> dict[str, Any]:
        """Inverse on the action entries; transforms that never touch actions pass the step through."""
        return step

    def _require_metadata(self) -> DatasetMetadata:
        if self.metadata is None:
            raise RuntimeError(f"{type(self).__name__}: call set_metadata(DatasetMetadata) before use")
        return self.metadata


class ComposedTransform(Transform):
    """Applies `transforms` in order; `unapply` runs their inverses in reverse order."""

    def __init__(self, transforms: Sequence[Transform]):
        super().__init__()
        self.transforms = list(transforms)

    def set_metadata(self, metadata: DatasetMetadata) -> None:
        super().set_metadata(metadata)
        for transform in self.transforms:
            transform.set_metadata(metadata)

    def train(self) -> ComposedTransform:
        super().train()
        for transform in self.transforms:
            transform.train()
        return self

    def eval(self) -> ComposedTransform:
        super().eval()
        for transform in self.transforms:
            transform.eval()
        return self

    def apply(self, step: dict[str, Any]) -> dict[str, Any]:
        for transform in self.transforms:
            step = transform.apply(step)
        return step

    def unapply(self, step: dict[str, Any]) -> dict[str, Any]:
        for transform in reversed(self.transforms):
            step = transform.unapply(step)
        return step


class SampleTransform(ComposedTransform):
    """A data config's whole chain, split where samples may cross to the device: `pixels` (the video
    stage: raw frames -> model-size uint8 frames through `image_ops.crop_resize`, or
    `image_ops.native_crop_resize` for N1.6's native aspect), then `host` (state
    and action transforms, concatenation, packing). Training runs both in the loader; a policy whose
    engine crops and resizes frames on the GPU (with the same `image_ops` functions) runs `host` alone.
    `host` shares the transform objects, so metadata and train / eval mode set here reach it."""

    def __init__(self, pixels: Transform, host: Sequence[Transform]):
        super().__init__([pixels, *host])
        self.pixels = pixels
        self.host = ComposedTransform(host)


# ---- video -------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class ColorJitter:
    """torchvision-style ranges: factors uniform in [1 - x, 1 + x] (brightness, contrast, saturation),
    hue shift uniform in [-hue, hue] (fraction of a full turn)."""

    brightness: float = 0.3
    contrast: float = 0.4
    saturation: float = 0.5
    hue: float = 0.08


class VideoTransform(Transform):
    """VideoToTensor -> VideoCrop -> VideoResize -> VideoColorJitter -> VideoToNumpy as one stage.

    All views of equal resolution are processed as one stack with one crop offset; crop is random in
    training and centred in eval, the colour jitter (training only) draws its factors per view.
    `resize`: "square" (N1.5: crop, then `image_size` x `image_size`, `image_ops.crop_resize`) or
    "shortest_edge" (N1.6: native aspect, shortest edge `image_size`, sides multiples of `multiple`,
    `image_ops.native_crop_resize`); all views must then come out the same size."""

    def __init__(self, video_keys: Sequence[str], crop_scale: float = 0.95, image_size: int = 224,
                 color_jitter: ColorJitter | None = ColorJitter(), resize: str = "square", multiple: int = 1):
        super().__init__()
        self.video_keys = list(video_keys)
        self.geometry = image_ops.ImageGeometry(resize, crop_scale, image_size, multiple)
        self.color_jitter = color_jitter

    def apply(self, step: dict[str, Any]) -> dict[str, Any]:
        present = [key for key in self.video_keys if key in step]
        if not present:
            return step
        frames = [self._checked_frames(step, key) for key in present]  # each uint8 [T, H, W, 3]
        if len({tuple(f.shape) for f in frames}) == 1:
            groups = [list(range(len(present)))]
        else:
            groups = [[i] for i in range(len(present))]
        for group in groups:
            stacked = torch.stack([frames[i] for i in group], 1)  # [T, V, H, W, 3]
            out = self._process(stacked)  # [T, V, S, S, 3]
            for v, i in enumerate(group):
                step[present[i]] = out[:, v].numpy()
        sizes = {key: step[key].shape[1:3] for key in present}
        if len(set(sizes.values())) > 1:
            raise DatasetError(", ".join(present), None, "views that resize to one size (stacked per step)",
                               {key: list(size) for key, size in sizes.items()})
        return step

    def _checked_frames(self, step: Mapping[str, Any], key: str) -> torch.Tensor:
        frames = torch.as_tensor(step[key])
        if frames.dtype != torch.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
            raise DatasetError(key, None, "uint8 frames [T, H, W, 3]", f"{frames.dtype} {list(frames.shape)}")
        if self.metadata is not None:
            _, name = split_key(key)
            info = self.metadata.modalities.get("video", {}).get(name)
            if info is not None and list(info["resolution"]) != [frames.shape[2], frames.shape[1]]:
                raise DatasetError(key, "resolution", f"[W, H] = {info['resolution']} as in the metadata",
                                   [frames.shape[2], frames.shape[1]])
        return frames

    def _process(self, frames: torch.Tensor) -> torch.Tensor:
        """uint8 [T, V, H, W, 3] -> uint8 [T, V, S, S, 3] (square) | [T, V, H', W', 3] (shortest_edge)"""
        jitter = self.color_jitter if self.training else None
        adjust = None if jitter is None else lambda x: color_jitter(x, jitter)
        return self.geometry(frames, random=self.training, adjust=adjust)


def grayscale(x: torch.Tensor) -> torch.Tensor:
    """[..., 3, H, W] -> [..., 1, H, W] (ITU-R 601-2 luma)."""
    r, g, b = x.unbind(-3)
    return (0.299 * r + 0.587 * g + 0.114 * b).unsqueeze(-3)


def adjust_hue(x: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Rotate the HSV hue of x [..., 3, H, W] in [0, 1] by `shift` [..., H, W]-broadcastable turns,
    keeping saturation and value. With hue h in sixths of a turn, max M and spread d = M - min,
    channel n in (5, 3, 1) becomes M - d clamp(min(k, 4 - k), 0, 1), k = (n + h) mod 6."""
    r, g, b = x.unbind(-3)
    value = torch.maximum(torch.maximum(r, g), b)
    delta = value - torch.minimum(torch.minimum(r, g), b)
    inv = delta.clamp(min=1e-12).reciprocal_()
    hue6 = torch.where(value == r, (g - b) * inv,
                       torch.where(value == g, (b - r) * inv + 2, (r - g) * inv + 4))
    hue6 += 6 * shift + 6  # in (0, 12), so the remainder below sees non-negative numbers
    k = torch.stack([hue6 + 5, hue6 + 3, hue6 + 1], -3).remainder_(6)
    return value.unsqueeze(-3) - delta.unsqueeze(-3) * torch.minimum(k, 4 - k).clamp_(0, 1)


def color_jitter(x: torch.Tensor, jitter: ColorJitter) -> torch.Tensor:
    """float [T, V, 3, H, W] in [0, 1]: brightness, contrast, saturation and hue in random order, one
    set of factors per view (shared by its time steps)."""
    views = x.shape[1]

    def factors(spread: float) -> torch.Tensor:  # [1, V, 1, 1, 1]
        return torch.empty(views).uniform_(max(0.0, 1 - spread), 1 + spread).view(1, views, 1, 1, 1)

    for op in torch.randperm(4).tolist():
        if op == 0 and jitter.brightness > 0:
            x = (x * factors(jitter.brightness)).clamp(0, 1)
        elif op == 1 and jitter.contrast > 0:
            f = factors(jitter.contrast)
            x = (f * x + (1 - f) * grayscale(x).mean((-3, -2, -1), keepdim=True)).clamp(0, 1)
        elif op == 2 and jitter.saturation > 0:
            f = factors(jitter.saturation)
            x = (f * x + (1 - f) * grayscale(x)).clamp(0, 1)
        elif op == 3 and jitter.hue > 0:
            x = adjust_hue(x, torch.empty(views).uniform_(-jitter.hue, jitter.hue).view(1, views, 1, 1))
    return x


# ---- state / action ----------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class _KeyPlan:
    """How one key is normalized: forward y = x * scale + offset (then clamp), inverse y * inv_scale +
    inv_offset; binary thresholds at 0.5 both ways; rotations are converted before normalization."""

    mode: str | None
    scale: np.ndarray | None = None
    offset: np.ndarray | None = None
    inv_scale: np.ndarray | None = None
    inv_offset: np.ndarray | None = None
    clamp: bool = False
    source_rotation: str | None = None
    target_rotation: str | None = None


def _linear_plan(mode: str, stats: Mapping[str, np.ndarray]) -> dict[str, Any]:
    """scale / offset of the forward and inverse maps of `mode`, with the degenerate-stat rules."""
    if mode in ("min_max", "q99"):
        lo, hi = (stats["min"], stats["max"]) if mode == "min_max" else (stats["q01"], stats["q99"])
        span = hi - lo
        ok = span != 0
        safe = np.where(ok, span, 1)
        # degenerate dims: min_max -> 0, q99 -> x unchanged
        fallback_scale = 0.0 if mode == "min_max" else 1.0
        return {"scale": np.where(ok, 2 / safe, fallback_scale),
                "offset": np.where(ok, -2 * lo / safe - 1, 0),
                "inv_scale": span / 2, "inv_offset": (hi + lo) / 2, "clamp": mode == "q99"}
    if mode == "mean_std":
        mean, std = stats["mean"], stats["std"]
        ok = std != 0
        safe = np.where(ok, std, 1)
        return {"scale": np.where(ok, 1 / safe, 1), "offset": np.where(ok, -mean / safe, 0),
                "inv_scale": std, "inv_offset": mean}
    if mode == "scale":
        bound = np.maximum(np.abs(stats["min"]), np.abs(stats["max"]))
        return {"scale": np.where(bound != 0, 1 / np.where(bound != 0, bound, 1), 0),
                "offset": np.zeros_like(bound)}
    raise ValueError(f"unknown normalization mode {mode!r}; expected one of {NORMALIZATION_MODES}")


def _fixed_rotation_stats(target: str) -> dict[str, np.ndarray]:
    bound = FIXED_ROTATION_BOUNDS.get(target, EULER_BOUND)
    dim = rotation_dim(target)
    return {"min": np.full(dim, -bound, np.float32), "max": np.full(dim, bound, np.float32)}


class StateActionTransform(Transform):
    """Per-key rotation conversion and normalization of `state.*` / `action.*` keys (spec 7.3).

    `normalization_modes`: {full key: min_max | q99 | mean_std | binary | scale}; keys without a mode
    are passed through. `target_rotations`: {full key: rotation type} converts from the metadata's
    rotation_type; such an absolute key may only use min_max, with fixed bounds (+-1, or +-pi for
    axis-angle / Euler); a converted relative key may not be normalized. `relative_keys`: action keys
    made state-relative before this transform (`RelativeAction`), normalized with the per-horizon-step
    statistics `metadata.key_stats("relative_action", k)` [T, D] elementwise. `clip_outliers` (N1.6):
    min_max values are clipped to [-1, 1] after normalizing and before un-normalizing."""

    def __init__(self, keys: Sequence[str], normalization_modes: Mapping[str, str] | None = None,
                 target_rotations: Mapping[str, str] | None = None, relative_keys: Sequence[str] = (),
                 clip_outliers: bool = False):
        super().__init__()
        self.keys = list(keys)
        self.normalization_modes = dict(normalization_modes or {})
        self.target_rotations = dict(target_rotations or {})
        self.relative_keys, self.clip_outliers = list(relative_keys), clip_outliers
        for key, mode in self.normalization_modes.items():
            if mode not in NORMALIZATION_MODES:
                raise ValueError(f"{key}: unknown normalization mode {mode!r}; expected one of "
                                 f"{NORMALIZATION_MODES}")
        for key, target in self.target_rotations.items():
            rotation_dim(target)  # raises on an unknown name
            if key not in self.keys:
                raise ValueError(f"target rotation for {key!r}, which is not one of {self.keys}")
        self._plans: dict[str, _KeyPlan] = {}
        self._input_dtypes: dict[str, np.dtype] = {}

    def set_metadata(self, metadata: DatasetMetadata) -> None:
        super().set_metadata(metadata)
        self._plans = {key: self._plan(key, metadata) for key in self.keys}

    def _plan(self, key: str, metadata: DatasetMetadata) -> _KeyPlan:
        group, name = split_key(key)
        info = metadata.array_info(group, name)
        mode = self.normalization_modes.get(key)
        source, target = info.get("rotation_type"), self.target_rotations.get(key)
        where = f"metadata of {metadata.embodiment_tag!r}"
        if not info.get("continuous", True) and mode not in (None, "binary"):
            raise DatasetError(where, f"{group}.{name}", "binary normalization for a non-float key",
                               f"mode {mode!r}")
        if target is not None:
            if source is None:
                raise DatasetError(where, f"modalities.{group}.{name}.rotation_type",
                                   f"a rotation type to convert to {target!r}", "null")
            if mode is not None and not info.get("absolute", True):
                raise ValueError(f"{key}: a converted relative rotation cannot be normalized "
                                 f"(mode {mode!r}); drop its normalization mode")
            if mode not in (None, "min_max"):
                raise ValueError(f"{key}: a converted absolute rotation must use min_max (fixed bounds), "
                                 f"found {mode!r}")
        if mode is None or mode == "binary":
            return _KeyPlan(mode=mode, source_rotation=source, target_rotation=target)
        if target is not None:
            stats = _fixed_rotation_stats(target)
        else:
            stats = metadata.key_stats(RELATIVE_ACTION if key in self.relative_keys else group, name)
        linear = _linear_plan(mode, stats)
        if mode == "min_max" and self.clip_outliers:
            linear["clamp"] = True
        return _KeyPlan(mode=mode, source_rotation=source, target_rotation=target, **linear)

    def _require_plan(self, key: str) -> _KeyPlan:
        if not self._plans:
            self._require_metadata()
        return self._plans[key]

    def apply(self, step: dict[str, Any]) -> dict[str, Any]:
        for key in self.keys:
            if key not in step:
                continue
            plan = self._require_plan(key)
            raw = np.asarray(step[key])
            self._input_dtypes[key] = raw.dtype
            x = raw.astype(np.float32, copy=False)
            if plan.target_rotation is not None:
                x = convert_rotation(torch.from_numpy(np.ascontiguousarray(x)), plan.source_rotation,
                                     plan.target_rotation).numpy()
            elif plan.scale is not None and (x.shape[-1] != plan.scale.shape[-1]
                                             or (plan.scale.ndim == 2 and x.shape[-2:] != plan.scale.shape)):
                expected = (f"{plan.scale.shape[-1]} values per step (metadata)" if plan.scale.ndim == 1 else
                            f"[{plan.scale.shape[0]}, {plan.scale.shape[1]}] (per-step relative statistics)")
                raise DatasetError(key, None, expected, f"shape {list(x.shape)}")
            step[key] = self._normalize(x, plan)
        return step

    @staticmethod
    def _normalize(x: np.ndarray, plan: _KeyPlan) -> np.ndarray:
        if plan.mode is None:
            return x
        if plan.mode == "binary":
            return (x > 0.5).astype(np.float32)
        y = x * plan.scale + plan.offset
        return (np.clip(y, -1, 1) if plan.clamp else y).astype(np.float32, copy=False)

    def unapply(self, step: dict[str, Any]) -> dict[str, Any]:
        for key in self.keys:
            if key not in step:
                continue
            plan = self._require_plan(key)
            x = np.asarray(step[key], dtype=np.float32)
            if plan.mode == "scale":
                raise ValueError(f"{key}: the 'scale' normalization cannot be inverted")
            if plan.mode == "binary":
                x = (x > 0.5).astype(np.float32)
            elif plan.mode is not None:
                if plan.mode == "min_max" and self.clip_outliers:
                    x = np.clip(x, -1, 1)
                x = x * plan.inv_scale + plan.inv_offset
            if plan.target_rotation is not None:
                x = convert_rotation(torch.from_numpy(np.ascontiguousarray(x, np.float32)),
                                     plan.target_rotation, plan.source_rotation).numpy()
            step[key] = x.astype(self._input_dtypes.get(key, np.float32), copy=False)
        return step


class RelativeAction(Transform):
    """Action keys relative to the last observed state (N1.6 spec 4.5, joint-space groups): `action.<k>`
    [T, D] -> action - `state.<k>`[-1], in raw units (first in the host chain, before any
    normalization). `unapply` adds the reference back after de-normalization: the step passed to it
    carries `reference_state` = {`state.<k>`: raw last observed state [..., D]} ([B, D] for actions
    [B, T, D])."""

    def __init__(self, action_keys: Sequence[str]):
        super().__init__()
        self.action_keys = list(action_keys)

    @staticmethod
    def state_key(action_key: str) -> str:
        return f"state.{split_key(action_key)[1]}"

    def apply(self, step: dict[str, Any]) -> dict[str, Any]:
        for key in self.action_keys:
            if key not in step:
                continue
            state_key = self.state_key(key)
            if state_key not in step:
                raise DatasetError(key, state_key, "the state the relative action is taken from", "none")
            action = np.asarray(step[key], np.float32)
            reference = np.asarray(step[state_key], np.float32)[-1]
            if reference.shape[-1] != action.shape[-1]:
                raise DatasetError(key, state_key, f"{action.shape[-1]} values per step, as the action",
                                   f"shape {list(reference.shape)}")
            step[key] = action - reference
        return step

    def unapply(self, step: dict[str, Any]) -> dict[str, Any]:
        references = step.get(REFERENCE_STATE) or {}
        for key in self.action_keys:
            if key not in step:
                continue
            state_key = self.state_key(key)
            if state_key not in references:
                raise ObservationError(f"{key} is relative to {state_key}: expected {REFERENCE_STATE!r} "
                                       f"holding its raw last observed value, found "
                                       f"{sorted(references) if references else 'none'}")
            action = np.asarray(step[key], np.float32)
            reference = np.asarray(references[state_key], np.float32)
            if reference.shape[-1:] != action.shape[-1:] or reference.shape[:-1] != action.shape[:-2]:
                raise ObservationError(f"{key} is relative to {state_key}: expected {REFERENCE_STATE} "
                                       f"{state_key} of shape {[*action.shape[:-2], action.shape[-1]]} for "
                                       f"actions {list(action.shape)}, found {list(reference.shape)}")
            step[key] = action + reference[..., None, :]
        return step


class StateActionSinCos(Transform):
    """x [T, D] -> concat(sin x, cos x) [T, 2D] (GR1 state; not inverted)."""

    def __init__(self, keys: Sequence[str]):
        super().__init__()
        self.keys = list(keys)

    def apply(self, step: dict[str, Any]) -> dict[str, Any]:
        for key in self.keys:
            if key in step:
                x = np.asarray(step[key], dtype=np.float32)
                step[key] = np.concatenate([np.sin(x), np.cos(x)], -1)
        return step


# ---- concat and pack ---------------------------------------------------------------------------
class Concat(Transform):
    """Per-key entries -> `video` [T, V, H, W, 3], `state` [T, Ds], `action` [T, Da] (config order).
    `unapply` splits `action` [..., >= Da] into `action.<k>` slices; keys converted to another rotation
    type take that type's width, padding beyond Da is ignored."""

    def __init__(self, video_keys: Sequence[str], state_keys: Sequence[str], action_keys: Sequence[str],
                 action_target_rotations: Mapping[str, str] | None = None):
        super().__init__()
        self.video_keys, self.state_keys = list(video_keys), list(state_keys)
        self.action_keys = list(action_keys)
        self.action_target_rotations = dict(action_target_rotations or {})

    def action_dims(self) -> list[int]:
        metadata = self._require_metadata()
        return [rotation_dim(self.action_target_rotations[key]) if key in self.action_target_rotations
                else metadata.dim(*split_key(key)) for key in self.action_keys]

    def apply(self, step: dict[str, Any]) -> dict[str, Any]:
        if self.video_keys and all(key in step for key in self.video_keys):
            step["video"] = np.stack([step.pop(key) for key in self.video_keys], 1)
        for name, keys in (("state", self.state_keys), ("action", self.action_keys)):
            if keys and all(key in step for key in keys):
                step[name] = np.concatenate([np.asarray(step.pop(key), np.float32) for key in keys], -1)
        return step

    def unapply(self, step: dict[str, Any]) -> dict[str, Any]:
        if "action" not in step:
            return step
        action = np.asarray(step.pop("action"))
        bounds = np.cumsum([0, *self.action_dims()])
        if action.shape[-1] < bounds[-1]:
            raise ValueError(f"action has {action.shape[-1]} values per step, the keys {self.action_keys} "
                             f"need {bounds[-1]}")
        for key, start, end in zip(self.action_keys, bounds[:-1], bounds[1:], strict=True):
            step[key] = action[..., start:end]
        return step


def first_text(value: Any) -> str:
    """The instruction string of a language entry: first element of a list / tuple / array, else str().
    Always the plain string, the form the original renders in training (its dataset gives a list of one
    string; GR00TTransform takes element 0), also for the [B, 1] arrays its policy would print as
    `"['...']"`."""
    if isinstance(value, (list, tuple)):
        value = value[0]
    elif isinstance(value, np.ndarray):
        value = value.reshape(-1)[0]
    return str(value)


class GR00TPack(Transform):
    """Concatenated step -> model sample (docs/ARCHITECTURE.md): images uint8 [T*V, H, W, 3] in (t v)
    order, language str, state / state_mask [T, max_state_dim] (padded or truncated), action /
    action_mask [max_action_horizon, max_action_dim] (only when the step has actions; padded rows and
    dims are zero and masked False), embodiment_id (`embodiment_index` when given, else the index of the
    tag in `embodiment_table`).
    `unapply` keeps the first `action_horizon` rows of a predicted `action` [..., H, A]."""

    def __init__(self, language_keys: Sequence[str], max_state_dim: int = 64, max_action_dim: int = 32,
                 default_instruction: str = DEFAULT_INSTRUCTION, action_horizon: int | None = None,
                 max_action_horizon: int | None = None, embodiment_table: str = "n1.5",
                 embodiment_index: int | None = None):
        super().__init__()
        self.language_keys = list(language_keys)
        self.max_state_dim, self.max_action_dim = max_state_dim, max_action_dim
        self.default_instruction = default_instruction
        self.action_horizon, self.max_action_horizon = action_horizon, max_action_horizon
        self.embodiment_table, self.embodiment_index = embodiment_table, embodiment_index

    def apply(self, step: dict[str, Any]) -> dict[str, Any]:
        metadata = self._require_metadata()
        sample: dict[str, Any] = {}
        if "video" in step:
            video = step["video"]  # [T, V, S, S, 3]
            sample["images"] = np.ascontiguousarray(video.reshape(-1, *video.shape[2:]))
        language = next((step[key] for key in self.language_keys if key in step), None)
        sample["language"] = self.default_instruction if language is None else first_text(language)
        if "state" in step:
            sample["state"], sample["state_mask"] = _pad(np.asarray(step["state"]), self.max_state_dim)
        if "action" in step:
            action = np.asarray(step["action"])
            if action.shape[-1] > self.max_action_dim:
                raise ValueError(f"action has {action.shape[-1]} dims, more than max_action_dim "
                                 f"{self.max_action_dim}")
            sample["action"], sample["action_mask"] = _pad(action, self.max_action_dim)
            if self.max_action_horizon is not None:
                sample["action"], sample["action_mask"] = _pad_rows(sample["action"], sample["action_mask"],
                                                                    self.max_action_horizon)
        sample["embodiment_id"] = (self.embodiment_index if self.embodiment_index is not None
                                   else embodiment_index(metadata.embodiment_tag, self.embodiment_table))
        return sample

    def unapply(self, step: dict[str, Any]) -> dict[str, Any]:
        if "action" in step and self.action_horizon is not None:
            step["action"] = np.asarray(step["action"])[..., :self.action_horizon, :]
        return step


def _pad(x: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray]:
    """[T, D] -> float32 [T, width] (zero padded or truncated), bool mask [T, width]."""
    out = np.zeros((*x.shape[:-1], width), np.float32)
    kept = min(width, x.shape[-1])
    out[..., :kept] = x[..., :kept]
    mask = np.zeros(out.shape, bool)
    mask[..., :kept] = True
    return out, mask


def _pad_rows(x: np.ndarray, mask: np.ndarray, rows: int) -> tuple[np.ndarray, np.ndarray]:
    """x / mask [T, D] -> [rows, D], zero / False rows appended (T > rows is an error)."""
    if x.shape[0] > rows:
        raise ValueError(f"action has {x.shape[0]} steps, more than max_action_horizon {rows}")
    extra = rows - x.shape[0]
    return np.pad(x, ((0, extra), (0, 0))), np.pad(mask, ((0, extra), (0, 0)))
