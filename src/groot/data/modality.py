"""`meta/modality.json` (which slices of which parquet column form each state / action key, which
video feature backs each camera) and the official `ModalityConfig` (which relative steps to sample).

Schema (spec 6.2):
    {"state":  {<key>: {"start": int, "end": int, "rotation_type"?: str, "absolute"?: bool,
                        "dtype"?: str, "range"?: [lo, hi], "original_key"?: str}},
     "action": {... same ...},
     "video":  {<key>: {"original_key": str}},
     "annotation"?: {<key>: {"original_key"?: str}}}
Slices are Python `[start:end)` on the concatenated vector of `original_key` (default
`observation.state` for state, `action` for action).
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from groot.errors import DatasetError

log = logging.getLogger(__name__)

ROTATION_TYPES = (
    "axis_angle", "quaternion", "rotation_6d", "matrix",
    "euler_angles_rpy", "euler_angles_ryp", "euler_angles_pry",
    "euler_angles_pyr", "euler_angles_yrp", "euler_angles_ypr",
)
DEFAULT_ORIGINAL_KEY = {"state": "observation.state", "action": "action"}
ARRAY_FIELDS = ("start", "end", "rotation_type", "absolute", "dtype", "range", "original_key")


@dataclasses.dataclass(frozen=True)
class ModalityConfig:
    """Official name: the steps (relative to the sampled step) and the full keys of one modality."""

    delta_indices: list[int]
    modality_keys: list[str]

    def to_dict(self) -> dict[str, list]:
        return {"delta_indices": list(self.delta_indices), "modality_keys": list(self.modality_keys)}

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "ModalityConfig") -> ModalityConfig:
        for name in ("delta_indices", "modality_keys"):
            if not isinstance(data.get(name), list):
                raise DatasetError(source, name, "a list", data.get(name))
        if not all(_is_int(i) for i in data["delta_indices"]):
            raise DatasetError(source, "delta_indices", "a list of integers", data["delta_indices"])
        if not all(isinstance(k, str) for k in data["modality_keys"]):
            raise DatasetError(source, "modality_keys", "a list of strings", data["modality_keys"])
        return cls(list(data["delta_indices"]), list(data["modality_keys"]))

    @classmethod
    def from_json(cls, text: str) -> ModalityConfig:
        return cls.from_dict(json.loads(text))


@dataclasses.dataclass(frozen=True)
class ArraySpec:
    """One state or action key: `original_key[..., start:end]`."""

    start: int
    end: int
    original_key: str
    rotation_type: str | None = None
    absolute: bool = True
    dtype: str = "float32"
    range: list | None = None

    @property
    def dim(self) -> int:
        return self.end - self.start

    @property
    def continuous(self) -> bool:
        """Non-float keys (e.g. a gripper open/close flag) are discrete: they need `binary` normalization."""
        return np.issubdtype(np.dtype(self.dtype), np.floating)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"start": self.start, "end": self.end, "original_key": self.original_key,
                               "absolute": self.absolute, "dtype": self.dtype}
        if self.rotation_type is not None:
            out["rotation_type"] = self.rotation_type
        if self.range is not None:
            out["range"] = self.range
        return out


@dataclasses.dataclass(frozen=True)
class ModalitySpec:
    """The parsed `meta/modality.json`; keys are modality keys without the `state.` / `video.` prefix."""

    state: dict[str, ArraySpec]
    action: dict[str, ArraySpec]
    video: dict[str, str]  # modality key -> original LeRobot key, e.g. "observation.images.front"
    annotation: dict[str, str] = dataclasses.field(default_factory=dict)  # key -> parquet column

    @classmethod
    def load(cls, path: str | Path) -> ModalitySpec:
        path = Path(path)
        if not path.is_file():
            raise DatasetError(path, None, "a modality.json file", "no such file")
        try:
            data = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise DatasetError(path, None, "valid JSON", f"{type(e).__name__}: {e}") from e
        return cls.from_dict(data, source=_display_name(path))

    @classmethod
    def from_dict(cls, data: Any, source: str = "meta/modality.json") -> ModalitySpec:
        if not isinstance(data, Mapping):
            raise DatasetError(source, None, "a JSON object", type(data).__name__)
        _warn_unknown(set(data) - {"state", "action", "video", "annotation"}, "", source)
        arrays = {group: _parse_arrays(data, group, source) for group in ("state", "action")}
        return cls(
            state=arrays["state"],
            action=arrays["action"],
            video=_parse_original_keys(data, "video", source, default_prefix=None),
            annotation=_parse_original_keys(data, "annotation", source, default_prefix="annotation."),
        )

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "state": {k: v.to_dict() for k, v in self.state.items()},
            "action": {k: v.to_dict() for k, v in self.action.items()},
            "video": {k: {"original_key": v} for k, v in self.video.items()},
        }
        if self.annotation:
            out["annotation"] = {k: {"original_key": v} for k, v in self.annotation.items()}
        return out

    def arrays(self, group: str) -> dict[str, ArraySpec]:
        """`group` is "state" or "action"."""
        return self.state if group == "state" else self.action

    def column_widths(self) -> dict[str, int]:
        """Smallest width each parquet vector column must have: {original_key: max end}."""
        widths: dict[str, int] = {}
        for group in ("state", "action"):
            for spec in self.arrays(group).values():
                widths[spec.original_key] = max(widths.get(spec.original_key, 0), spec.end)
        return widths

    def check_columns(self, widths: Mapping[str, int], source: str, columns_file: str) -> None:
        """Check every slice against the real vector widths ({column: D}, e.g. from info.json features).

        `source` names modality.json in errors; `columns_file` names where `widths` came from."""
        for group in ("state", "action"):
            for key, spec in self.arrays(group).items():
                if spec.original_key not in widths:
                    raise DatasetError(source, f"{group}.{key}.original_key",
                                       f"a column of {columns_file} ({', '.join(sorted(widths))})",
                                       repr(spec.original_key))
                width = widths[spec.original_key]
                if spec.end > width:
                    raise DatasetError(source, f"{group}.{key}.end",
                                       f"<= the width of column {spec.original_key!r} ({width})", spec.end)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _display_name(path: Path) -> str:
    """`meta/modality.json` style names: errors should read the same wherever the dataset lives."""
    return f"{path.parent.name}/{path.name}" if path.parent.name else path.name


def _parse_arrays(data: Mapping[str, Any], group: str, source: str) -> dict[str, ArraySpec]:
    section = data.get(group)
    if not isinstance(section, Mapping):
        raise DatasetError(source, group, "an object mapping keys to {start, end, ...}", section)
    specs = {key: _parse_array(entry, f"{group}.{key}", group, source) for key, entry in section.items()}
    _check_no_overlap(specs, group, source)
    return specs


def _warn_unknown(unknown: set[str], prefix: str, source: str) -> None:
    """Unknown fields are ignored like the original does, but named: they are often typos."""
    for key in sorted(unknown):
        log.warning("%s: ignoring unknown key %r (a typo?)", source, prefix + key)


def _parse_array(entry: Any, where: str, group: str, source: str) -> ArraySpec:
    if not isinstance(entry, Mapping):
        raise DatasetError(source, where, "an object with start and end", entry)
    _warn_unknown(set(entry) - set(ARRAY_FIELDS), f"{where}.", source)
    start, end = entry.get("start"), entry.get("end")
    if not _is_int(start) or start < 0:
        raise DatasetError(source, f"{where}.start", "an integer >= 0", repr(start))
    if not _is_int(end) or end <= start:
        raise DatasetError(source, f"{where}.end", f"an integer > start ({start})", repr(end))
    rotation = entry.get("rotation_type")
    if rotation is not None and rotation not in ROTATION_TYPES:
        raise DatasetError(source, f"{where}.rotation_type", f"one of {', '.join(ROTATION_TYPES)}",
                           repr(rotation))
    absolute = entry.get("absolute", True)
    if not isinstance(absolute, bool):
        raise DatasetError(source, f"{where}.absolute", "true or false", repr(absolute))
    dtype = entry.get("dtype", "float32")
    if not isinstance(dtype, str) or not _is_numpy_dtype(dtype):
        raise DatasetError(source, f"{where}.dtype", "a numpy dtype name such as float32", repr(dtype))
    value_range = entry.get("range")
    if value_range is not None and not (isinstance(value_range, list) and len(value_range) == 2):
        raise DatasetError(source, f"{where}.range", "null or a [low, high] list", repr(value_range))
    original_key = entry.get("original_key", DEFAULT_ORIGINAL_KEY[group])
    if not isinstance(original_key, str) or not original_key:
        raise DatasetError(source, f"{where}.original_key", "a parquet column name", repr(original_key))
    return ArraySpec(start=start, end=end, original_key=original_key, rotation_type=rotation,
                     absolute=absolute, dtype=dtype, range=value_range)


def _is_numpy_dtype(name: str) -> bool:
    try:
        np.dtype(name)
    except TypeError:
        return False
    return True


def _check_no_overlap(specs: Mapping[str, ArraySpec], group: str, source: str) -> None:
    ordered = sorted(specs.items(), key=lambda kv: (kv[1].original_key, kv[1].start))
    for (prev_key, prev), (key, spec) in zip(ordered, ordered[1:], strict=False):
        if spec.original_key == prev.original_key and spec.start < prev.end:
            raise DatasetError(source, f"{group}.{key}.start",
                               f">= {prev.end} (the end of {group}.{prev_key}; slices must not overlap)",
                               spec.start)


def _parse_original_keys(data: Mapping[str, Any], group: str, source: str,
                         default_prefix: str | None) -> dict[str, str]:
    """`{key: {"original_key": str}}`; without `default_prefix`, original_key is required."""
    section = data.get(group, {})
    if not isinstance(section, Mapping):
        raise DatasetError(source, group, "an object mapping keys to {original_key}", section)
    out = {}
    for key, entry in section.items():
        if not isinstance(entry, Mapping):
            raise DatasetError(source, f"{group}.{key}", "an object with original_key", repr(entry))
        fallback = None if default_prefix is None else default_prefix + key
        original_key = entry.get("original_key", fallback)
        if not isinstance(original_key, str) or not original_key:
            raise DatasetError(source, f"{group}.{key}.original_key", "a LeRobot feature name",
                               repr(original_key))
        out[key] = original_key
    return out
