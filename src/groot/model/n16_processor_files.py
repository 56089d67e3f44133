"""The processor files of an N1.6 checkpoint: `processor_config.json`, `statistics.json`,
`embodiment_id.json`, at the top level of the checkpoint directory.

Layout of the original, `Gr00tN1d6Processor.save_pretrained` / `from_pretrained` in
`gr00t/model/gr00t_n1d6/processing_gr00t_n1d6.py` (NVIDIA/Isaac-GR00T @
005e8a4f719383fb0bc6af5a64e72bb87ca04fc2), with its `ModalityConfig` / `ActionConfig`
(`gr00t/data/types.py`) serialised by `gr00t/data/utils.py:to_json_serializable` (dataclasses as
objects, enums by name):

    processor_config.json
      {"processor_class": "Gr00tN1d6Processor", "processor_kwargs": {
         "modality_configs": {tag: {"video" | "state" | "action" | "language": {
             "delta_indices": [int], "modality_keys": [str],
             "sin_cos_embedding_keys": [str] | null, "mean_std_embedding_keys": [str] | null,
             "action_configs": null | [{"rep": "RELATIVE" | "ABSOLUTE" | "DELTA", "type": "NON_EEF" | "EEF",
                                        "format": "DEFAULT" | ..., "state_key": str | null}]}}},
         "image_crop_size", "image_target_size", "use_albumentations", "random_rotation_angle",
         "color_jitter_params", "shortest_image_edge", "crop_fraction", "model_name", "model_type",
         "formalize_language", "max_state_dim", "max_action_dim", "max_action_horizon", "use_percentiles",
         "clip_outliers", "apply_sincos_state_encoding", "use_relative_action"}}
    statistics.json
      {tag: {"state" | "action" | "relative_action": {group: {stat: list}}}}
      (stat: min, max, mean, std, q01, q99; [D], relative_action [T, D])
    embodiment_id.json
      {tag: projector index}; when absent, or for tags it lacks, the table below

Modality keys carry no `video.` / `state.` / `action.` prefix; language keys are the full
`annotation.*` names. The original reads `processor_kwargs` into its constructor, so nothing beyond
these keys may be written there.

groot writes these files next to its own `experiment_cfg/` files for every N1.6 checkpoint
(`write_n16_processor_files`) and reads them where `experiment_cfg/metadata.json` is absent, as in the
released `nvidia/GR00T-N1.6-3B` (`read_n16_processor_files`, `load_n16_metadata`). An action group is
relative (predicted as the difference to the last state) when its `action_configs` entry says `RELATIVE`
and `use_relative_action` is on; groot writes `RELATIVE` (as `NON_EEF`, `DEFAULT`) for exactly the
groups whose metadata carries `relative_action` statistics. Camera resolutions are not recorded by
these files, so metadata read from them has no video entries. `n16_data_config` derives a tag's
DataConfig from them (what `Policy` serves a directory without `experiment_cfg/` with).
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from groot.data.embodiment import N16_EMBODIMENT_INDICES
from groot.data.metadata import DatasetMetadata
from groot.data.modality import ModalityConfig
from groot.errors import CheckpointError
from groot.model.config import GR00TN16Config

PROCESSOR_CONFIG_FILE = "processor_config.json"
STATISTICS_FILE = "statistics.json"
EMBODIMENT_ID_FILE = "embodiment_id.json"
PROCESSOR_CLASS = "Gr00tN1d6Processor"
MODALITIES = ("video", "state", "action", "language")
ARRAY_MODALITIES = ("state", "action", "relative_action")
KEY_PREFIXES = {"video": "video.", "state": "state.", "action": "action.", "language": ""}

# processor_kwargs the model config does not decide: the release's values (N1.6 spec 1.2, 4.5)
RELEASE_IMAGE_DEFAULTS = {"shortest_image_edge": 256, "crop_fraction": 0.95}


# ---- writing -----------------------------------------------------------------------------------------
def write_n16_processor_files(directory: str | Path, config: GR00TN16Config,
                              metadata: Mapping[str, Any] | None, data_config: Any = None) -> list[Path]:
    """Write the three files into `directory`. metadata: {tag: DatasetMetadata | its dict} (None: no
    statistics); data_config: the DataConfig the model was trained with (object or its dict; None: no
    modality configs), one for every tag of `metadata`. -> the paths written."""
    directory = Path(directory)
    blocks = {tag: _metadata_dict(value) for tag, value in (metadata or {}).items()}
    modality_configs = ({tag: official_modality_config(data_config, block) for tag, block in blocks.items()}
                        if data_config is not None else {})
    files = {
        PROCESSOR_CONFIG_FILE: {"processor_class": PROCESSOR_CLASS,
                                "processor_kwargs": processor_kwargs(config, modality_configs, data_config)},
        STATISTICS_FILE: {tag: {modality: block["statistics"][modality] for modality in ARRAY_MODALITIES
                                if modality in block["statistics"]} for tag, block in blocks.items()},
        EMBODIMENT_ID_FILE: embodiment_ids(blocks, data_config),
    }
    paths = []
    for name, content in files.items():
        path = directory / name
        path.write_text(json.dumps(content, indent=2) + "\n")
        paths.append(path)
    return paths


def embodiment_ids(tags: Iterable[str], data_config: Any = None) -> dict[str, int]:
    """The N1.6 table, each of `tags` at the data config's `embodiment_index` when it sets one."""
    ids = dict(N16_EMBODIMENT_INDICES)
    index = (data_config.get("embodiment_index") if isinstance(data_config, Mapping)
             else getattr(data_config, "embodiment_index", None))
    if index is not None:
        ids.update({tag: index for tag in tags})
    return ids


def processor_kwargs(config: GR00TN16Config, modality_configs: dict[str, Any],
                     data_config: Any = None) -> dict[str, Any]:
    """The `processor_kwargs` block: the model config's processing values, the image values
    (`shortest_image_edge`, `crop_fraction`: a native-aspect data config's edge and crop, else the model
    config's, else the release's), evaluation-only augmentation settings except the data config's colour
    jitter."""
    head = config.action_head_cfg
    image = {name: getattr(config, name, default) for name, default in RELEASE_IMAGE_DEFAULTS.items()}
    if data_config is not None and _field(data_config, "image_resize") == "shortest_edge":
        image = {"shortest_image_edge": _field(data_config, "image_size"),
                 "crop_fraction": _field(data_config, "crop_scale")}
    return {
        "modality_configs": modality_configs,
        "image_crop_size": None,
        "image_target_size": None,
        "use_albumentations": True,
        "random_rotation_angle": None,
        "color_jitter_params": _field(data_config, "color_jitter") if data_config is not None else None,
        **image,
        "model_name": "nvidia/Eagle-Block2A-2B-v2",
        "model_type": "eagle",
        "formalize_language": config.formalize_language,
        "max_state_dim": head.max_state_dim,
        "max_action_dim": head.max_action_dim,
        "max_action_horizon": head.action_horizon,
        "use_percentiles": False,
        "clip_outliers": True,
        "apply_sincos_state_encoding": config.apply_sincos_state_encoding,
        "use_relative_action": config.use_relative_action,
    }


def official_modality_config(data_config: Any, metadata: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """One tag's `modality_configs` entry from a DataConfig (object or dict) and that tag's metadata
    dict: keys without their modality prefix, `mean_std` keys listed, all state keys as sin/cos keys when
    the data config encodes state as sin/cos, action groups with `relative_action` statistics RELATIVE."""
    observation, actions = _field(data_config, "observation_indices"), _field(data_config, "action_indices")
    relative = set(metadata["statistics"].get("relative_action", {}))

    def strip(keys: list[str]) -> list[str]:
        return [key.split(".", 1)[1] for key in keys]

    def mean_std(modes: Mapping[str, str]) -> list[str] | None:
        return strip([key for key, mode in modes.items() if mode == "mean_std"]) or None

    def entry(indices: list[int], keys: list[str], **extra: Any) -> dict[str, Any]:
        return {"delta_indices": list(indices), "modality_keys": keys, "sin_cos_embedding_keys": None,
                "mean_std_embedding_keys": None, "action_configs": None, **extra}

    state_keys = strip(_field(data_config, "state_keys"))
    action_keys = strip(_field(data_config, "action_keys"))
    return {
        "video": entry(observation, strip(_field(data_config, "video_keys"))),
        "state": entry(observation, state_keys,
                       sin_cos_embedding_keys=state_keys if _field(data_config, "state_sincos") else None,
                       mean_std_embedding_keys=mean_std(_field(data_config, "state_normalization"))),
        "action": entry(actions, action_keys,
                        mean_std_embedding_keys=mean_std(_field(data_config, "action_normalization")),
                        action_configs=[{"rep": "RELATIVE" if key in relative else "ABSOLUTE",
                                         "type": "NON_EEF", "format": "DEFAULT", "state_key": None}
                                        for key in action_keys]),
        "language": entry(observation, list(_field(data_config, "language_keys"))),
    }


# ---- reading -----------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class N16ProcessorFiles:
    """What the three files hold (validated on reading)."""

    root: Path
    processor_kwargs: dict[str, Any]
    statistics: dict[str, dict[str, Any]]  # {tag: {state | action | relative_action: {group: {stat: list}}}}
    embodiment_ids: dict[str, int]  # embodiment_id.json over the N1.6 table

    def tags(self) -> list[str]:
        return list(self.statistics)

    def modality_config(self, tag: str) -> dict[str, ModalityConfig]:
        """{"video" | "state" | "action" | "language": ModalityConfig} of `tag`, keys with their
        `video.` / `state.` / `action.` prefix (language keys as stored)."""
        raw = self.stored_modality_config(tag)
        configs = {}
        for modality in MODALITIES:
            keys = [KEY_PREFIXES[modality] + key for key in raw[modality]["modality_keys"]]
            configs[modality] = ModalityConfig(list(raw[modality]["delta_indices"]), keys)
        return configs

    def relative_action_groups(self, tag: str) -> list[str]:
        """Action groups of `tag` predicted relative to the state (RELATIVE and `use_relative_action`)."""
        if not self.processor_kwargs.get("use_relative_action", False):
            return []
        action = self.stored_modality_config(tag)["action"]
        configs = action.get("action_configs") or []
        return [key for key, cfg in zip(action["modality_keys"], configs, strict=False)
                if isinstance(cfg, Mapping) and cfg.get("rep") == "RELATIVE"]

    def metadata(self, tag: str | None = None) -> DatasetMetadata:
        """`tag`'s statistics as groot's DatasetMetadata (None: the only tag): statistics as stored
        (`relative_action` included), modalities state / action {shape [D] from the stats, absolute
        False for relative action groups, no rotation type, continuous}, no video entries."""
        tag = self._tag(tag)
        stats = self.statistics[tag]
        relative = set(self.relative_action_groups(tag))
        source = str(self.root / STATISTICS_FILE)
        modalities: dict[str, dict[str, Any]] = {"video": {}}
        for modality in ("state", "action"):
            groups = stats.get(modality)
            if not isinstance(groups, Mapping):
                raise CheckpointError(f"{source}: key '{tag}.{modality}': expected an object of groups, "
                                      f"found {groups!r}")
            modalities[modality] = {
                group: {"absolute": not (modality == "action" and group in relative), "rotation_type": None,
                        "shape": [_group_dim(source, f"{tag}.{modality}.{group}", values)],
                        "continuous": True}
                for group, values in groups.items()}
        block = {"statistics": stats, "modalities": modalities, "embodiment_tag": tag}
        return DatasetMetadata.from_dict(block, source=source)

    def embodiment_index(self, tag: str) -> int:
        if tag not in self.embodiment_ids:
            raise CheckpointError(f"{self.root / EMBODIMENT_ID_FILE}: expected a projector index for "
                                  f"embodiment tag {tag!r}, found tags {sorted(self.embodiment_ids)}")
        return self.embodiment_ids[tag]

    def _tag(self, tag: str | None) -> str:
        if tag is None and len(self.statistics) == 1:
            return next(iter(self.statistics))
        if tag not in self.statistics:
            expected = f"a block for embodiment tag {tag!r}" if tag is not None else "exactly one tag block"
            raise CheckpointError(f"{self.root / STATISTICS_FILE}: expected {expected}, found tags "
                                  f"{sorted(self.statistics)}")
        return tag

    def stored_modality_config(self, tag: str) -> dict[str, Any]:
        """`tag`'s `modality_configs` entry as stored (keys without prefix, the embedding key lists and
        `action_configs` as written), its four modalities checked."""
        path, where = self.root / PROCESSOR_CONFIG_FILE, f"processor_kwargs.modality_configs.{tag}"
        raw = self.processor_kwargs.get("modality_configs", {}).get(tag)
        if not isinstance(raw, Mapping):
            raise CheckpointError(f"{path}: key '{where}': expected the modality config of the tag, "
                                  f"found {raw!r}")
        for modality in MODALITIES:
            entry = raw.get(modality)
            if not (isinstance(entry, Mapping) and _is_list_of(entry.get("delta_indices"), int)
                    and _is_list_of(entry.get("modality_keys"), str)):
                raise CheckpointError(f"{path}: key '{where}.{modality}': expected {{delta_indices: [int], "
                                      f"modality_keys: [str], ...}}, found {entry!r}")
        return raw


def read_n16_processor_files(root: str | Path) -> N16ProcessorFiles:
    """Read and check the three files of a checkpoint directory (embodiment_id.json may be absent, as
    the original allows); NaN / inf anywhere is refused."""
    root = Path(root)
    config = _read_json(root / PROCESSOR_CONFIG_FILE)
    kwargs = config.get("processor_kwargs")
    if not isinstance(kwargs, dict) or not isinstance(kwargs.get("modality_configs", {}), dict):
        raise CheckpointError(f"{root / PROCESSOR_CONFIG_FILE}: key 'processor_kwargs': expected an object "
                              f"with a 'modality_configs' object, found {kwargs!r}")
    statistics = _read_json(root / STATISTICS_FILE)
    for tag, block in statistics.items():
        if not isinstance(block, dict):
            raise CheckpointError(f"{root / STATISTICS_FILE}: key {tag!r}: expected an object of modalities, "
                                  f"found {block!r}")
    ids = dict(N16_EMBODIMENT_INDICES)
    if (root / EMBODIMENT_ID_FILE).is_file():
        stored = _read_json(root / EMBODIMENT_ID_FILE)
        for tag, index in stored.items():
            if not (isinstance(index, int) and not isinstance(index, bool) and index >= 0):
                raise CheckpointError(f"{root / EMBODIMENT_ID_FILE}: key {tag!r}: expected a projector index "
                                      f"(integer >= 0), found {index!r}")
        ids.update(stored)
    return N16ProcessorFiles(root=root, processor_kwargs=kwargs, statistics=statistics, embodiment_ids=ids)


def load_n16_metadata(root: str | Path, tag: str | None = None) -> DatasetMetadata:
    """`tag`'s DatasetMetadata from an N1.6 checkpoint's processor files (None: the only tag)."""
    return read_n16_processor_files(root).metadata(tag)


# ---- helpers -----------------------------------------------------------------------------------------
def _metadata_dict(value: Any) -> dict[str, Any]:
    return value.to_dict() if hasattr(value, "to_dict") else dict(value)


def _field(data_config: Any, name: str) -> Any:
    return data_config[name] if isinstance(data_config, Mapping) else getattr(data_config, name)


def _is_list_of(value: Any, kind: type) -> bool:
    return isinstance(value, list) and all(isinstance(v, kind) and not isinstance(v, bool) for v in value)


def _refuse_constant(name: str) -> float:
    raise ValueError(f"non-finite number {name}")


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise CheckpointError(f"{path}: expected the N1.6 processor file, found no file")
    try:
        data = json.loads(path.read_text(), parse_constant=_refuse_constant)
    except ValueError as err:
        raise CheckpointError(f"{path}: expected finite JSON, found {err}") from err
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: expected a JSON object, found {type(data).__name__}")
    return data


def _group_dim(source: str, where: str, values: Any) -> int:
    """D of one group's stats {stat: [D]} (its `mean`), every value a finite number."""
    mean = values.get("mean") if isinstance(values, Mapping) else None
    if not (isinstance(mean, list) and mean and all(_finite_number(v) for v in mean)):
        raise CheckpointError(f"{source}: key '{where}.mean': expected a list of finite numbers, "
                              f"found {mean!r}")
    return len(mean)


def _finite_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
