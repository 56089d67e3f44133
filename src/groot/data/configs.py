"""Data configs: which keys and steps to sample, and how to transform them (spec 7.2).

A `DataConfig` is plain data (JSON via `to_dict` / `from_dict`, stored in a checkpoint as
`experiment_cfg/data_config.json`); `.modality_config()` gives the sampling plan and `.transform()`
builds the transform chain. `get_data_config` knows the 12 official N1.5 configs, `libero_panda`, the
GR1 aliases, and `"package.module:ClassOrObject"` for configs defined elsewhere.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType
from typing import Any

from groot.data.embodiment import EMBODIMENT_TABLES, embodiment_index
from groot.data.image_ops import IMAGE_RESIZE_MODES, ImageGeometry
from groot.data.modality import ModalityConfig, ModalitySpec
from groot.data.transforms import (
    NORMALIZATION_MODES,
    ColorJitter,
    Concat,
    GR00TPack,
    RelativeAction,
    SampleTransform,
    StateActionSinCos,
    StateActionTransform,
    Transform,
    VideoTransform,
)
from groot.errors import ConfigError, DatasetError

DEFAULT_COLOR_JITTER = dataclasses.asdict(ColorJitter())


@dataclasses.dataclass
class DataConfig:
    """Full key names (`video.ego_view`, `state.left_arm`, `action.left_arm`, `annotation.<...>`).

    The fields after `max_action_dim` describe GR00T N1.6 inputs; their defaults keep N1.5's:
    `image_resize` "square" (crop, then `image_size` square) | "shortest_edge" (native aspect,
    shortest edge `image_size`, sides multiples of `image_multiple`); `max_action_horizon` (None: the
    number of action indices) rows of the packed action; `relative_action_keys` action keys taken
    relative to the last observed `state.<same name>`; `clip_outliers` clips min_max values to [-1, 1];
    `embodiment_table` "n1.5" | "n1.6" numbers the embodiment tags."""

    name: str
    video_keys: list[str]
    state_keys: list[str]
    action_keys: list[str]
    language_keys: list[str]
    observation_indices: list[int] = dataclasses.field(default_factory=lambda: [0])
    action_indices: list[int] = dataclasses.field(default_factory=lambda: list(range(16)))
    state_normalization: dict[str, str] = dataclasses.field(default_factory=dict)  # key -> mode
    action_normalization: dict[str, str] = dataclasses.field(default_factory=dict)
    state_target_rotations: dict[str, str] = dataclasses.field(default_factory=dict)  # key -> type
    action_target_rotations: dict[str, str] = dataclasses.field(default_factory=dict)
    state_sincos: bool = False  # state -> (sin x, cos x), no normalization (GR1 configs)
    crop_scale: float = 0.95
    image_size: int = 224
    color_jitter: dict[str, float] | None = dataclasses.field(
        default_factory=lambda: dict(DEFAULT_COLOR_JITTER))  # None: no colour jitter
    max_state_dim: int = 64
    max_action_dim: int = 32
    image_resize: str = "square"
    image_multiple: int = 1
    max_action_horizon: int | None = None
    relative_action_keys: list[str] = dataclasses.field(default_factory=list)
    clip_outliers: bool = False
    embodiment_table: str = "n1.5"
    embodiment_index: int | None = None

    def __post_init__(self) -> None:
        source = f"data config {self.name!r}"
        for field, prefix in (("video_keys", "video."), ("state_keys", "state."), ("action_keys", "action."),
                              ("language_keys", "annotation.")):
            for key in getattr(self, field):
                if not key.startswith(prefix):
                    raise DatasetError(source, field, f"keys starting with {prefix!r}", repr(key))
        for field, keys in (("state_normalization", self.state_keys),
                            ("action_normalization", self.action_keys),
                            ("state_target_rotations", self.state_keys),
                            ("action_target_rotations", self.action_keys)):
            for key in getattr(self, field):
                if key not in keys:
                    raise DatasetError(source, field, f"keys among {keys}", repr(key))
        for field in ("state_normalization", "action_normalization"):
            for key, mode in getattr(self, field).items():
                if mode not in NORMALIZATION_MODES:
                    raise DatasetError(source, f"{field}.{key}", f"one of {NORMALIZATION_MODES}", repr(mode))
        if self.state_sincos and (self.state_normalization or self.state_target_rotations):
            raise DatasetError(source, "state_sincos", "no state normalization or rotations with sin/cos",
                               "both")
        self._check_n16_fields(source)

    def _check_n16_fields(self, source: str) -> None:
        if self.image_resize not in IMAGE_RESIZE_MODES:
            raise DatasetError(source, "image_resize", f"one of {IMAGE_RESIZE_MODES}",
                               repr(self.image_resize))
        if not (isinstance(self.image_multiple, int) and self.image_multiple >= 1):
            raise DatasetError(source, "image_multiple", "a positive integer", repr(self.image_multiple))
        horizon = len(self.action_indices)
        if self.max_action_horizon is not None and not (isinstance(self.max_action_horizon, int)
                                                        and self.max_action_horizon >= horizon):
            raise DatasetError(source, "max_action_horizon", f"null or an integer >= the {horizon} action "
                               "indices", repr(self.max_action_horizon))
        if self.embodiment_table not in EMBODIMENT_TABLES:
            raise DatasetError(source, "embodiment_table", f"one of {tuple(EMBODIMENT_TABLES)}",
                               repr(self.embodiment_table))
        index = self.embodiment_index
        if index is not None and not (isinstance(index, int) and not isinstance(index, bool) and index >= 0):
            raise DatasetError(source, "embodiment_index", "null or a projector index (integer >= 0)",
                               repr(index))
        for key in self.relative_action_keys:
            state_key = RelativeAction.state_key(key) if key.startswith("action.") else None
            if key not in self.action_keys:
                raise DatasetError(source, "relative_action_keys", f"keys among {self.action_keys}",
                                   repr(key))
            if state_key not in self.state_keys:
                raise DatasetError(source, "relative_action_keys",
                                   f"{state_key!r} among the state keys (the reference of {key!r})",
                                   f"state keys {self.state_keys}")
            if key in self.action_target_rotations:
                raise DatasetError(source, f"action_target_rotations.{key}",
                                   "no rotation conversion of a key in relative_action_keys",
                                   repr(self.action_target_rotations[key]))

    # ---- (de)serialisation -----------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any],
                  source: str = "experiment_cfg/data_config.json") -> DataConfig:
        names = [f.name for f in dataclasses.fields(cls)]
        for key in data:
            if key not in names:
                raise DatasetError(source, key, f"one of {', '.join(names)}", "an unknown field")
        required = [f.name for f in dataclasses.fields(cls)
                    if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
        for key in required:
            if key not in data:
                raise DatasetError(source, key, "a value", "none")
        return cls(**{key: _copy_json(value) for key, value in data.items()})

    # ---- what the dataset and the policy use -----------------------------------------------------
    def modality_config(self) -> dict[str, ModalityConfig]:
        return {
            "video": ModalityConfig(list(self.observation_indices), list(self.video_keys)),
            "state": ModalityConfig(list(self.observation_indices), list(self.state_keys)),
            "action": ModalityConfig(list(self.action_indices), list(self.action_keys)),
            "language": ModalityConfig(list(self.observation_indices), list(self.language_keys)),
        }

    def projector_index(self, embodiment_tag: str) -> int:
        """The action head's embodiment slot for `embodiment_tag`: `embodiment_index`, else the tag's
        index in `embodiment_table` (an unknown tag raises ConfigError)."""
        if self.embodiment_index is not None:
            return self.embodiment_index
        return embodiment_index(embodiment_tag, self.embodiment_table)

    def image_geometry(self) -> ImageGeometry:
        """The crop and resize of every camera frame (training: random crop; eval: centred)."""
        return ImageGeometry(self.image_resize, self.crop_scale, self.image_size, self.image_multiple)

    def transform(self) -> SampleTransform:
        """The sample chain: the pixel stage (crop, resize, colour jitter in training), then the host
        chain (relative actions, state / action normalization and rotations, concatenation, packing)."""
        jitter = None if self.color_jitter is None else ColorJitter(**self.color_jitter)
        state_transform = (StateActionSinCos(self.state_keys) if self.state_sincos else
                           StateActionTransform(self.state_keys, self.state_normalization,
                                                self.state_target_rotations,
                                                clip_outliers=self.clip_outliers))
        relative: list[Transform] = ([RelativeAction(self.relative_action_keys)]
                                     if self.relative_action_keys else [])
        pixels = VideoTransform(self.video_keys, self.crop_scale, self.image_size, jitter,
                                resize=self.image_resize, multiple=self.image_multiple)
        return SampleTransform(pixels, [
            *relative,
            state_transform,
            StateActionTransform(self.action_keys, self.action_normalization, self.action_target_rotations,
                                 relative_keys=self.relative_action_keys, clip_outliers=self.clip_outliers),
            Concat(self.video_keys, self.state_keys, self.action_keys, self.action_target_rotations),
            GR00TPack(self.language_keys, self.max_state_dim, self.max_action_dim,
                      action_horizon=len(self.action_indices), max_action_horizon=self.max_action_horizon,
                      embodiment_table=self.embodiment_table, embodiment_index=self.embodiment_index),
        ])


def _copy_json(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _copy_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_copy_json(v) for v in value]
    return value


# ---- registry ----------------------------------------------------------------------------------
TASK_DESCRIPTION = "annotation.human.action.task_description"


def _full(prefix: str, names: Sequence[str]) -> list[str]:
    return [f"{prefix}.{name}" for name in names]


def _modes(keys: Sequence[str], mode: str) -> dict[str, str]:
    return {key: mode for key in keys}


def _gr1(name: str, parts: Sequence[str], language: str, video: str = "ego_view",
         sincos: bool = True) -> DataConfig:
    state, action = _full("state", parts), _full("action", parts)
    return DataConfig(name, _full("video", [video]), state, action, [language],
                      state_normalization={} if sincos else _modes(state, "min_max"),
                      action_normalization=_modes(action, "min_max"), state_sincos=sincos)


def fourier_gr1_arms_only() -> DataConfig:
    return _gr1("fourier_gr1_arms_only", ["left_arm", "right_arm", "left_hand", "right_hand"],
                TASK_DESCRIPTION)


def fourier_gr1_arms_waist() -> DataConfig:
    return _gr1("fourier_gr1_arms_waist", ["left_arm", "right_arm", "left_hand", "right_hand", "waist"],
                "annotation.human.coarse_action")


def fourier_gr1_full_upper_body() -> DataConfig:
    return _gr1("fourier_gr1_full_upper_body",
                ["left_arm", "right_arm", "left_hand", "right_hand", "waist", "neck"], TASK_DESCRIPTION,
                video="front_view", sincos=False)


def bimanual_panda_gripper() -> DataConfig:
    state = _full("state", ["right_arm_eef_pos", "right_arm_eef_quat", "right_gripper_qpos",
                            "left_arm_eef_pos", "left_arm_eef_quat", "left_gripper_qpos"])
    action = _full("action", ["right_arm_eef_pos", "right_arm_eef_rot", "right_gripper_close",
                              "left_arm_eef_pos", "left_arm_eef_rot", "left_gripper_close"])
    return DataConfig(
        "bimanual_panda_gripper", _full("video", ["right_wrist_view", "left_wrist_view", "front_view"]),
        state, action, [TASK_DESCRIPTION],
        state_normalization=_modes([k for k in state if "quat" not in k], "min_max"),
        state_target_rotations=_modes([k for k in state if "quat" in k], "rotation_6d"),
        action_normalization=_modes([k for k in action if "gripper" in k], "binary"))


def bimanual_panda_hand() -> DataConfig:
    state = _full("state", ["right_arm_eef_pos", "right_arm_eef_quat", "right_hand",
                            "left_arm_eef_pos", "left_arm_eef_quat", "left_hand"])
    action = _full("action", ["right_arm_eef_pos", "right_arm_eef_rot", "right_hand",
                              "left_arm_eef_pos", "left_arm_eef_rot", "left_hand"])
    return DataConfig(
        "bimanual_panda_hand", _full("video", ["right_wrist_view", "left_wrist_view", "ego_view"]),
        state, action, [TASK_DESCRIPTION],
        state_normalization=_modes([k for k in state if "quat" not in k], "min_max"),
        state_target_rotations=_modes([k for k in state if "quat" in k], "rotation_6d"),
        action_normalization=_modes([k for k in action if "hand" in k], "min_max"))


def single_panda_gripper() -> DataConfig:
    state = _full("state", ["end_effector_position_relative", "end_effector_rotation_relative",
                            "gripper_qpos", "base_position", "base_rotation"])
    action = _full("action", ["end_effector_position", "end_effector_rotation", "gripper_close",
                              "base_motion", "control_mode"])
    binary = _full("action", ["gripper_close", "control_mode"])
    return DataConfig(
        "single_panda_gripper", _full("video", ["left_view", "right_view", "wrist_view"]),
        state, action, [TASK_DESCRIPTION],
        state_normalization=_modes(state, "min_max"),
        state_target_rotations=_modes([k for k in state if "rotation" in k], "rotation_6d"),
        action_normalization={**_modes(action, "min_max"), **_modes(binary, "binary")})


def _min_max_everywhere(name: str, video: Sequence[str], state_parts: Sequence[str],
                        action_parts: Sequence[str], language: str) -> DataConfig:
    state, action = _full("state", state_parts), _full("action", action_parts)
    return DataConfig(name, _full("video", video), state, action, [language],
                      state_normalization=_modes(state, "min_max"),
                      action_normalization=_modes(action, "min_max"))


def so100() -> DataConfig:
    return _min_max_everywhere("so100", ["webcam"], ["single_arm", "gripper"], ["single_arm", "gripper"],
                               "annotation.human.task_description")


def so100_dualcam() -> DataConfig:
    return _min_max_everywhere("so100_dualcam", ["front", "wrist"], ["single_arm", "gripper"],
                               ["single_arm", "gripper"], "annotation.human.task_description")


def unitree_g1() -> DataConfig:
    arms_hands = ["left_arm", "right_arm", "left_hand", "right_hand"]
    return _min_max_everywhere("unitree_g1", ["rs_view"], arms_hands, arms_hands,
                               "annotation.human.task_description")


def unitree_g1_full_body() -> DataConfig:
    arms_hands = ["left_arm", "right_arm", "left_hand", "right_hand"]
    return _min_max_everywhere("unitree_g1_full_body", ["rs_view"],
                               ["left_leg", "right_leg", "waist", *arms_hands], arms_hands,
                               "annotation.human.task_description")


def oxe_droid() -> DataConfig:
    state = _full("state", ["eef_position", "eef_rotation", "gripper_position"])
    action = _full("action", ["eef_position_delta", "eef_rotation_delta", "gripper_position"])
    return DataConfig(
        "oxe_droid", _full("video", ["exterior_image_1", "exterior_image_2", "wrist_image"]),
        state, action, ["annotation.language.language_instruction"],
        state_normalization=_modes(["state.eef_position", "state.gripper_position"], "min_max"),
        state_target_rotations={"state.eef_rotation": "rotation_6d"},
        action_normalization={"action.gripper_position": "binary"},
        action_target_rotations={"action.eef_rotation_delta": "axis_angle"})


def agibot_genie1() -> DataConfig:
    parts = ["left_arm_joint_position", "right_arm_joint_position", "left_effector_position",
             "right_effector_position", "head_position", "waist_position"]
    return _min_max_everywhere("agibot_genie1", ["top_head", "hand_left", "hand_right"], parts,
                               [*parts, "robot_velocity"], "annotation.language.action_text")


def libero_panda() -> DataConfig:
    """LIBERO Panda (new_embodiment): agent-view + wrist cameras, 7-dim OSC_POSE delta action; the gripper
    action is -1 open / +1 close (the simulator wrapper thresholds it).

    The end-effector orientation (axis-angle in the data, metadata rotation_type `axis_angle`) enters the
    model as a 6-D rotation: the gripper-down pose sits at angle ~pi, where axis-angle flips between
    +-pi axes from one step to the next. Model state: eef_pos 3 | rotation_6d 6 | gripper_qpos 2. The
    actions are deltas (relative) and stay as they are."""
    state = _full("state", ["eef_pos", "eef_axis_angle", "gripper_qpos"])
    action = _full("action", ["eef_delta_pos", "eef_delta_rot", "gripper"])
    return DataConfig("libero_panda", _full("video", ["image", "wrist_image"]), state, action,
                      [TASK_DESCRIPTION], state_normalization=_modes(state, "min_max"),
                      state_target_rotations={"state.eef_axis_angle": "rotation_6d"},  # fixed bounds +-1
                      action_normalization=_modes(action, "min_max"))


DATA_CONFIGS: Mapping[str, Callable[[], DataConfig]] = MappingProxyType({
    "fourier_gr1_arms_only": fourier_gr1_arms_only,
    "fourier_gr1_arms_waist": fourier_gr1_arms_waist,
    "fourier_gr1_full_upper_body": fourier_gr1_full_upper_body,
    "bimanual_panda_gripper": bimanual_panda_gripper,
    "bimanual_panda_hand": bimanual_panda_hand,
    "single_panda_gripper": single_panda_gripper,
    "so100": so100,
    "so100_dualcam": so100_dualcam,
    "unitree_g1": unitree_g1,
    "unitree_g1_full_body": unitree_g1_full_body,
    "oxe_droid": oxe_droid,
    "agibot_genie1": agibot_genie1,
    "libero_panda": libero_panda,
})
ALIASES: Mapping[str, str] = MappingProxyType({  # names used by some N1.5 revisions
    "gr1_arms_only": "fourier_gr1_arms_only",
    "gr1_arms_waist": "fourier_gr1_arms_waist",
    "gr1_full_upper_body": "fourier_gr1_full_upper_body",
})


def get_data_config(name: str) -> DataConfig:
    """A registered config by name (or alias), or `"package.module:Attribute"` where the attribute is
    a DataConfig, a DataConfig subclass (instantiated without arguments) or a function returning one."""
    name = ALIASES.get(name, name)
    if name in DATA_CONFIGS:
        return DATA_CONFIGS[name]()
    if ":" not in name:
        known = ", ".join([*DATA_CONFIGS, *ALIASES])
        raise ConfigError(f"unknown data config {name!r}; expected one of {known}, "
                         "or 'package.module:ClassOrObject'")
    module_name, _, attribute = name.partition(":")
    target = getattr(importlib.import_module(module_name), attribute)
    config = target() if callable(target) and not isinstance(target, DataConfig) else target
    if not isinstance(config, DataConfig):
        raise TypeError(f"{name} gave a {type(config).__name__}, expected a groot DataConfig")
    return config


def infer_data_config(modality: ModalitySpec, source: str = "meta/modality.json") -> str:
    """The one registered config whose video, state and action keys the dataset has: the config that
    uses the most of the dataset's keys (an exact match first). Raises ConfigError naming what the
    dataset has when none or several fit equally."""
    have = ({f"video.{k}" for k in modality.video}, {f"state.{k}" for k in modality.state},
            {f"action.{k}" for k in modality.action})
    fits: dict[str, int] = {}
    for name, build in DATA_CONFIGS.items():
        config = build()
        wanted = (set(config.video_keys), set(config.state_keys), set(config.action_keys))
        if all(w <= h for w, h in zip(wanted, have, strict=True)):
            fits[name] = sum(map(len, wanted))
    best = max(fits.values(), default=0)
    chosen = [name for name, used in fits.items() if used == best]
    if len(chosen) == 1:
        return chosen[0]
    found = (f"video {sorted(have[0])}, state {sorted(have[1])}, action {sorted(have[2])}" if not chosen
             else f"several configs fit equally: {', '.join(chosen)}")
    raise ConfigError(f"{source}: --data-config not given and no single registered config fits the "
                      f"dataset; expected the keys of one of {', '.join(DATA_CONFIGS)}, found {found}")
