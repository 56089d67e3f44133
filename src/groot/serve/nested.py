"""GR00T N1.6's nested observation layout <-> groot's flat one (spec 6.1); numpy only, no torch.

Nested (the N1.6 wire format, always batched):
    {"video": {<view>: uint8 [B, T, H, W, 3]}, "state": {<group>: float32 [B, T, D]},
     "language": {<language key>: [[str], ...]  (B lists of 1 string)}}
    <view> / <group> are short names ("video.<view>" / "state.<group>" are the modality config's keys);
    the language key is the full one (e.g. "annotation.human.action.task_description").
Flat (groot's PolicyLike):
    {"video.<view>": uint8 [B, T, H, W, 3], "state.<group>": float32 [B, T, D], <language key>: B str}
Actions: nested {<group>: float32 [B, T, D]} <-> flat {"action.<group>": float32 [B, T, D]}.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from groot.errors import ObservationError
from groot.finite import first_nonfinite

MODALITIES = ("video", "state", "language")
ACTION_PREFIX = "action."
_ARRAY_SPECS = {  # modality -> (dtype, ndim, layout)
    "video": (np.dtype(np.uint8), 5, "[B, T, H, W, 3]"),
    "state": (np.dtype(np.float32), 3, "[B, T, D]"),
}


# ---- server side: nested (strictly checked) -> flat --------------------------------------------------
def expected_keys(modality_config: Mapping[str, Any]) -> dict[str, dict[str, tuple[str, int]]]:
    """{"video" | "state" | "language": {nested key: (flat key, T)}} from the policy's modality config
    ({modality: ModalityConfig}); T = len(delta_indices)."""
    keys: dict[str, dict[str, tuple[str, int]]] = {}
    for modality in MODALITIES:
        config = modality_config.get(modality)
        if config is None:
            keys[modality] = {}
            continue
        steps = len(config.delta_indices)
        prefix = f"{modality}." if modality != "language" else ""
        keys[modality] = {full.removeprefix(prefix): (full, steps) for full in config.modality_keys}
    return keys


def flatten_observation(observation: Any, keys: Mapping[str, Mapping[str, tuple[str, int]]]) -> dict:
    """A nested observation, checked against `keys` (from `expected_keys`) -> the flat observation.

    Strict: every expected key and no other; video uint8 [B, T, H, W, 3], state float32 [B, T, D] with
    finite values, language B lists of exactly 1 string; T as the modality config says, one batch size
    B >= 1 throughout. Raises ObservationError naming the key path, expected and found."""
    _check_map("observation", observation, MODALITIES)
    flat: dict[str, Any] = {}
    batch_sizes: dict[str, int] = {}
    for modality in MODALITIES:
        wanted = keys[modality]
        where = f"observation[{modality!r}]"
        if not wanted:  # the policy takes none: an empty map or nothing
            _check_map(where, observation.get(modality, {}), ())
            continue
        if modality not in observation:
            raise ObservationError(f"{where}: missing; expected a map of {_listed(wanted)}")
        group = observation[modality]
        _check_map(where, group, tuple(wanted))
        missing = [key for key in wanted if key not in group]
        if missing:
            raise ObservationError(f"{where} is missing {_listed(missing)}; expected keys: "
                                   f"{_listed(wanted)}; found: {_listed(group)}")
        for key, (flat_key, steps) in wanted.items():
            path = f"{where}[{key!r}]"
            if modality == "language":
                flat[flat_key] = _language(path, group[key], steps)
                batch_sizes[path] = len(flat[flat_key])
            else:
                flat[flat_key] = _array(path, modality, group[key], steps)
                batch_sizes[path] = flat[flat_key].shape[0]
    if len(set(batch_sizes.values())) > 1:
        found = ", ".join(f"{path} {size}" for path, size in batch_sizes.items())
        raise ObservationError(f"observation: expected one batch size B for every key, found {found}")
    return flat


def _check_map(where: str, value: Any, allowed: tuple[str, ...]) -> None:
    if not isinstance(value, Mapping):
        raise ObservationError(f"{where}: expected a map of {_listed(allowed)}, found {type(value).__name__}")
    unexpected = [key for key in value if key not in allowed]
    if unexpected:
        raise ObservationError(f"{where}: unexpected key(s) {_listed(unexpected)}; expected keys: "
                               f"{_listed(allowed)} (the N1.6 layout: short video / state names, the full "
                               "language key)")


def _array(path: str, modality: str, value: Any, steps: int) -> np.ndarray:
    dtype, ndim, layout = _ARRAY_SPECS[modality]
    if not isinstance(value, np.ndarray):
        raise ObservationError(f"{path}: expected a {dtype} array {layout}, found {type(value).__name__}")
    if value.dtype != dtype:
        raise ObservationError(f"{path}: expected dtype {dtype}, found {value.dtype}")
    shape = list(value.shape)
    if value.ndim != ndim:
        raise ObservationError(f"{path}: expected {ndim} dims {layout}, found shape {shape}")
    if shape[0] < 1:
        raise ObservationError(f"{path}: expected a batch of at least 1 sample, found shape {shape}")
    if shape[1] != steps:
        raise ObservationError(f"{path}: expected T = {steps} (len(delta_indices) of the {modality} "
                               f"modality) in {layout}, found shape {shape}")
    if modality == "video" and shape[4] != 3:
        raise ObservationError(f"{path}: expected C = 3 (RGB) in {layout}, found shape {shape}")
    bad = first_nonfinite(value) if modality == "state" else None
    if bad is not None:
        raise ObservationError(f"{path}: expected finite values, found {value[bad]} at index {list(bad)}")
    return value


def _language(path: str, value: Any, steps: int) -> list[str]:
    expected = "B lists of 1 string, e.g. [['pick the cube']]"
    if steps != 1:
        raise ObservationError(f"{path}: the policy's language modality has {steps} delta indices; the N1.6 "
                               "protocol takes exactly 1")
    if not isinstance(value, (list, tuple)) or not value:
        raise ObservationError(f"{path}: expected {expected}, found {_short_repr(value)}")
    for i, item in enumerate(value):
        if not (isinstance(item, (list, tuple)) and len(item) == 1 and isinstance(item[0], str)):
            raise ObservationError(f"{path}[{i}]: expected a list of 1 string ({expected}), "
                                   f"found {_short_repr(item)}")
    return [item[0] for item in value]


# ---- client side: flat -> nested ----------------------------------------------------------------------
def nest_observation(flat: Mapping[str, Any]) -> tuple[dict[str, dict[str, Any]], bool]:
    """groot's flat observation, batched or not -> (nested batched observation, batched).

    Batched iff the state arrays are [B, T, D] (the videos [B, T, H, W, 3] when there is no state); an
    unbatched one gets B = 1. Numeric states travel as float32; other values as given (the server checks
    them). Keys other than video.* / state.* are language keys."""
    arrays = {key: np.asarray(value) for key, value in flat.items() if key.startswith(("video.", "state."))}
    states = [array for key, array in arrays.items() if key.startswith("state.")]
    batched = all(a.ndim >= 3 for a in states) if states else all(a.ndim >= 5 for a in arrays.values())
    nested: dict[str, dict[str, Any]] = {modality: {} for modality in MODALITIES}
    for key, value in flat.items():
        modality, _, name = key.partition(".")
        if key in arrays:
            array = arrays[key]
            if modality == "state" and array.dtype.kind in "fiu":
                array = array.astype(np.float32, copy=False)
            nested[modality][name] = array if batched else array[None]
        else:
            texts = [value] if isinstance(value, str) else list(value)
            nested["language"][key] = [[text] for text in texts]
    return nested, batched


# ---- actions ------------------------------------------------------------------------------------------
def unprefix_actions(actions: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """{"action.<group>": [B, T, D]} -> {<group>: float32 [B, T, D]}"""
    return {key.removeprefix(ACTION_PREFIX): np.asarray(value, np.float32) for key, value in actions.items()}


def prefix_actions(actions: Mapping[str, Any], batched: bool) -> dict[str, Any]:
    """{<group>: [B, T, D]} -> {"action.<group>": [B, T, D], or [T, D] when not `batched` (B = 1)}"""
    return {f"{ACTION_PREFIX}{key}": value if batched else value[0] for key, value in actions.items()}


def _listed(keys: Any) -> str:
    return ", ".join(repr(key) for key in keys) or "none"


def _short_repr(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else f"{type(value).__name__} {text[:80]}..."
