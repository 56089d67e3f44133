"""groot's DataConfig for one embodiment tag of an N1.6 checkpoint in the official layout (the processor
files of `n16_processor_files`, no `experiment_cfg/`), so that `Policy.from_pretrained` serves it.

What the original `Gr00tN1d6Processor` and its `StateActionProcessor` do for a tag (GROOT_N16_SPEC 4.1-4.6,
5), and the DataConfig field that does the same here:

    modality_configs[tag] keys and delta_indices          video / state / action / language keys (prefixed),
                                                          observation_indices, action_indices
    state: [sin, cos] for sin_cos_embedding_keys when     state_sincos (every state group)
      apply_sincos_state_encoding; else mean/std for
      mean_std_embedding_keys; else min-max
    state and action: mean_std_embedding_keys, else       state_normalization / action_normalization
      min-max (clipped to [-1, 1]: clip_outliers)          "mean_std" | "min_max", clip_outliers
    action_configs RELATIVE (use_relative_action):        relative_action_keys (normalized with the
      NON_EEF, reference = last state of the same group    per-step relative_action statistics)
    albumentations eval transform: shortest edge,         image_resize "shortest_edge", image_size,
      centre crop, shortest edge; Eagle's smart_resize     crop_scale, image_multiple (patch x pixel
                                                           unshuffle: 28)
    max_state_dim / max_action_dim / max_action_horizon   the same fields
    embodiment_id.json                                    embodiment_table "n1.6", embodiment_index when
                                                          the file numbers the tag otherwise

What groot would compute differently is refused with a CheckpointError naming the file and key, never
served with other numbers: percentiles (`use_percentiles`); `clip_outliers` false (the original still
clips when un-normalizing); the torchvision image path (`use_albumentations` false: letterbox and square
resize) or a letterbox; sin/cos on some state groups only; relative EEF actions or a reference state of
another group; video and state on different steps; and degenerate statistics the two treat apart (a
min-max state range `np.isclose` to zero but not zero: the original maps it to 0; a mean/std action
with std 0: the original passes the model's value through). A key absent from `processor_kwargs` takes
the original constructor's default, as its `from_pretrained` does.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from groot.data.configs import DataConfig
from groot.data.embodiment import N16_EMBODIMENT_INDICES
from groot.data.metadata import DatasetMetadata
from groot.errors import CheckpointError, DatasetError
from groot.model.config import GR00TN15Config
from groot.model.n16_processor_files import (
    PROCESSOR_CONFIG_FILE,
    STATISTICS_FILE,
    N16ProcessorFiles,
    read_n16_processor_files,
)

# Gr00tN1d6Processor.__init__'s defaults (NVIDIA/Isaac-GR00T @ 005e8a4f): what the original uses for a key
# processor_kwargs lacks
ORIGINAL_DEFAULTS: Mapping[str, Any] = {
    "use_percentiles": False, "clip_outliers": True, "apply_sincos_state_encoding": False,
    "use_albumentations": False, "shortest_image_edge": 512, "crop_fraction": 0.95,
    "image_target_size": None, "image_crop_size": None, "color_jitter_params": None,
    "formalize_language": True, "max_state_dim": 29, "max_action_dim": 29, "max_action_horizon": 40,
}
DEFAULT_IMAGE_MULTIPLE = 28  # Eagle-Block2A: patch 14 x pixel unshuffle 2
JITTER_FIELDS = ("brightness", "contrast", "saturation", "hue")


def load_n16_data_config(root: str | Path, tag: str | None = None) -> DataConfig:
    """`n16_data_config` of a checkpoint directory: its processor files and its N1.6 `config.json`."""
    from groot.model.checkpoint import CONFIG_FILE, read_config

    root = Path(root)
    config = read_config(root)
    if config.generation != "n1.6":
        raise CheckpointError(f"{root / CONFIG_FILE}: expected an N1.6 model config (model_type Gr00tN1d6) "
                              f"next to the N1.6 processor files, found a {config.generation} config")
    return n16_data_config(read_n16_processor_files(root), tag, config)


def n16_data_config(files: N16ProcessorFiles, tag: str | None = None,
                    model_config: GR00TN15Config | None = None) -> DataConfig:
    """The DataConfig that transforms `tag`'s observations and actions as the original processor does
    (None: the files' only tag). model_config: the checkpoint's N1.6 config (image multiple = patch x
    pixel unshuffle; the processor's dims, horizon and language flag must equal the model's); None:
    multiple 28, nothing compared. Raises CheckpointError naming the file and key."""
    metadata = files.metadata(tag)
    tag = metadata.embodiment_tag
    where = _Where(files.root, tag)
    kwargs = {**ORIGINAL_DEFAULTS, **files.processor_kwargs}
    _refuse_unsupported_flags(kwargs, where)
    stored = files.stored_modality_config(tag)
    modality = files.modality_config(tag)
    observation = list(modality["state"].delta_indices)
    if modality["video"].modality_keys and list(modality["video"].delta_indices) != observation:
        raise where.error("state.delta_indices", f"the video's steps {modality['video'].delta_indices} "
                          "(groot samples video and state on one set of steps)", observation)
    state_keys, action_keys = modality["state"].modality_keys, modality["action"].modality_keys
    state_sincos = _state_sincos(kwargs, stored["state"], where)
    relative = _relative_action_keys(files.relative_action_groups(tag), stored["action"], state_keys,
                                     len(modality["action"].delta_indices), metadata, where)
    state_modes = {} if state_sincos else _modes(state_keys, stored["state"])
    action_modes = _modes(action_keys, stored["action"])
    _check_degenerate_statistics(metadata, state_modes, action_modes, relative, files.root / STATISTICS_FILE)
    edge, crop = _image_edge_and_crop(kwargs, where)
    dims = {name: _positive_int(kwargs, name, where)
            for name in ("max_state_dim", "max_action_dim", "max_action_horizon")}
    if model_config is not None:
        _check_against_model(kwargs, dims, model_config, where)
    index = files.embodiment_index(tag)
    override = None if N16_EMBODIMENT_INDICES.get(tag) == index else index
    try:
        return DataConfig(
            name=tag, video_keys=modality["video"].modality_keys, state_keys=state_keys,
            action_keys=action_keys, language_keys=modality["language"].modality_keys,
            observation_indices=observation, action_indices=list(modality["action"].delta_indices),
            state_normalization=state_modes, action_normalization=action_modes, state_sincos=state_sincos,
            crop_scale=crop, image_size=edge, color_jitter=_color_jitter(kwargs["color_jitter_params"]),
            max_state_dim=dims["max_state_dim"], max_action_dim=dims["max_action_dim"],
            image_resize="shortest_edge", image_multiple=_image_multiple(model_config),
            max_action_horizon=dims["max_action_horizon"], relative_action_keys=relative, clip_outliers=True,
            embodiment_table="n1.6", embodiment_index=override)
    except DatasetError as err:
        raise CheckpointError(f"{where.path}: the modality config of embodiment tag {tag!r} does not make a "
                              f"data config: {err}") from err


class _Where:
    """processor_config.json of one tag: names its keys in errors."""

    def __init__(self, root: Path, tag: str):
        self.path, self.tag = root / PROCESSOR_CONFIG_FILE, tag

    def error(self, key: str, expected: str, found: Any, kwarg: bool = False) -> CheckpointError:
        """key: under `processor_kwargs` (kwarg) or under the tag's modality config."""
        full = f"processor_kwargs.{key}" if kwarg else f"processor_kwargs.modality_configs.{self.tag}.{key}"
        return CheckpointError(f"{self.path}: key '{full}': expected {expected}, found {found!r}")


def _refuse_unsupported_flags(kwargs: Mapping[str, Any], where: _Where) -> None:
    refused = {
        "use_percentiles": (False, "false (groot serves min / max normalization, not q01 / q99)"),
        "clip_outliers": (True, "true (groot cannot clip actions when un-normalizing without clipping "
                                "the state, as the original does with clip_outliers false)"),
        "use_albumentations": (True, "true (the shortest-edge image transform; groot has no letterbox / "
                                     "square-resize path; an absent key means the original's default false)"),
        "letter_box_transform": (False, "false or absent (groot has no letterbox transform)"),
    }
    for name, (wanted, expected) in refused.items():
        if kwargs.get(name, wanted) is not wanted:
            raise where.error(name, expected, kwargs.get(name), kwarg=True)


def _state_sincos(kwargs: Mapping[str, Any], state: Mapping[str, Any], where: _Where) -> bool:
    """Whether every state group is fed as [sin, cos] (None of them: False; some: refused)."""
    if not kwargs["apply_sincos_state_encoding"]:
        return False
    groups = state["modality_keys"]
    encoded = [group for group in groups if group in (state.get("sin_cos_embedding_keys") or [])]
    if encoded and encoded != groups:
        raise where.error("state.sin_cos_embedding_keys", f"every state group {groups} or none (groot "
                          "encodes all state groups as [sin, cos] or none)", encoded)
    return bool(encoded)


def _modes(keys: list[str], entry: Mapping[str, Any]) -> dict[str, str]:
    """{full key: "mean_std" | "min_max"} of a state / action modality."""
    mean_std = entry.get("mean_std_embedding_keys") or []
    return {key: "mean_std" if key.split(".", 1)[1] in mean_std else "min_max" for key in keys}


def _relative_action_keys(groups: list[str], action: Mapping[str, Any], state_keys: list[str], horizon: int,
                          metadata: DatasetMetadata, where: _Where) -> list[str]:
    """Full keys of the RELATIVE action `groups`, each taken from the last state of the same group."""
    configs = dict(zip(action["modality_keys"], action.get("action_configs") or [], strict=False))
    relative_stats = metadata.statistics.get("relative_action", {})
    statistics, tag = where.path.parent / STATISTICS_FILE, where.tag
    keys = []
    for group in groups:
        config, at = configs[group], f"action.action_configs[{action['modality_keys'].index(group)}]"
        if config.get("type") != "NON_EEF":
            raise where.error(f"{at}.type", "NON_EEF for a RELATIVE group (groot takes joint-space relative "
                              "actions, action - state, not end-effector poses)", config.get("type"))
        if config.get("state_key") not in (None, group):
            raise where.error(f"{at}.state_key", f"null or {group!r} (groot takes a relative action from the "
                              "state group of its own name)", config.get("state_key"))
        if f"state.{group}" not in state_keys:
            raise where.error("state.modality_keys", f"the state group {group!r} that the relative action "
                              f"group {group!r} is taken from", [key.split(".", 1)[1] for key in state_keys])
        stats = relative_stats.get(group)
        shape = list(np.shape(stats["min"])) if isinstance(stats, Mapping) and "min" in stats else None
        if shape != [horizon, metadata.dim("action", group)]:
            expected = [horizon, metadata.dim("action", group)]
            raise CheckpointError(f"{statistics}: key '{tag}.relative_action.{group}': expected per-step "
                                  f"statistics {expected} of the RELATIVE group, found "
                                  f"{'none' if shape is None else shape}")
        if metadata.dim("state", group) != metadata.dim("action", group):
            raise CheckpointError(f"{statistics}: key '{tag}.state.{group}': expected "
                                  f"{metadata.dim('action', group)} values, as the relative action group, "
                                  f"found {metadata.dim('state', group)}")
        keys.append(f"action.{group}")
    return keys


def _check_degenerate_statistics(metadata: DatasetMetadata, state_modes: Mapping[str, str],
                                 action_modes: Mapping[str, str], relative: list[str], path: Path) -> None:
    """Refuse the degenerate statistics the original treats otherwise than groot (module docstring)."""
    tag = metadata.embodiment_tag
    for key in [key for key, mode in state_modes.items() if mode == "min_max"]:
        group = key.split(".", 1)[1]
        stats = metadata.key_stats("state", group)
        apart = np.isclose(stats["max"], stats["min"]) & (stats["max"] != stats["min"])
        if apart.any():
            raise CheckpointError(f"{path}: key '{tag}.state.{group}.max': expected each dim's max equal to "
                                  f"its min or clearly apart from it (the original maps a range np.isclose "
                                  f"to 0 to 0, groot scales it), found dims {np.flatnonzero(apart).tolist()}")
    for key in [key for key, mode in action_modes.items() if mode == "mean_std"]:
        group = key.split(".", 1)[1]
        block = "relative_action" if key in relative else "action"
        std = metadata.key_stats(block, group)["std"]
        if (std == 0).any():
            raise CheckpointError(f"{path}: key '{tag}.{block}.{group}.std': expected std > 0 in every "
                                  "dim of a mean/std action group (the original passes the model's value "
                                  f"through where std is 0), found 0 at {np.flatnonzero(std == 0).tolist()}")


def _image_edge_and_crop(kwargs: Mapping[str, Any], where: _Where) -> tuple[int, float]:
    """(shortest edge, crop fraction) of the eval image transform; a null edge or crop comes from
    image_target_size / image_crop_size, as the original's albumentations builder takes them."""
    edge, crop = kwargs["shortest_image_edge"], kwargs["crop_fraction"]
    target, crop_size = kwargs["image_target_size"], kwargs["image_crop_size"]
    if edge is None and isinstance(target, list) and target:
        edge = target[0]
    if crop is None and isinstance(target, list) and isinstance(crop_size, list) and target and crop_size:
        crop = crop_size[0] / target[0]
    if not (isinstance(edge, int) and not isinstance(edge, bool) and edge > 0):
        raise where.error("shortest_image_edge", "a positive integer (or image_target_size)", edge,
                          kwarg=True)
    if not (isinstance(crop, (int, float)) and not isinstance(crop, bool) and 0 < crop <= 1):
        raise where.error("crop_fraction", "a number in (0, 1] (or image_crop_size / image_target_size)",
                          crop, kwarg=True)
    return edge, float(crop)


def _positive_int(kwargs: Mapping[str, Any], name: str, where: _Where) -> int:
    value = kwargs[name]
    if not (isinstance(value, int) and not isinstance(value, bool) and value > 0):
        raise where.error(name, "a positive integer", value, kwarg=True)
    return value


def _check_against_model(kwargs: Mapping[str, Any], dims: Mapping[str, int], model_config: GR00TN15Config,
                         where: _Where) -> None:
    head = model_config.action_head_cfg
    model = {"max_state_dim": head.max_state_dim, "max_action_dim": head.max_action_dim,
             "max_action_horizon": head.action_horizon,
             "formalize_language": getattr(model_config, "formalize_language", None)}
    found = {**dims, "formalize_language": kwargs["formalize_language"]}
    for name, value in model.items():
        if found[name] != value:
            raise where.error(name, f"{value!r}, the model config's value (config.json)", found[name],
                              kwarg=True)


def _image_multiple(model_config: GR00TN15Config | None) -> int:
    if model_config is None:
        return DEFAULT_IMAGE_MULTIPLE
    backbone = model_config.backbone_cfg
    return backbone.vision.patch_size * backbone.pixel_unshuffle


def _color_jitter(params: Any) -> dict[str, float] | None:
    """The training colour jitter (not used when serving) when stored as a map of numbers."""
    if not isinstance(params, Mapping) or not all(isinstance(params.get(name, 0.0), (int, float))
                                                  for name in JITTER_FIELDS):
        return None
    return {name: float(params.get(name, 0.0)) for name in JITTER_FIELDS}
