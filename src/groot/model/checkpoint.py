"""GR00T checkpoints: HF-style (sharded) safetensors + config.json + experiment_cfg/.

Layout (docs/ARCHITECTURE.md): `config.json`, `model.safetensors` or `model-0000k-of-0000n.safetensors`
with `model.safetensors.index.json`, `experiment_cfg/metadata.json`, `experiment_cfg/data_config.json`,
`tokenizer/`; N1.6 checkpoints also carry the original's processor files (`processor_config.json`,
`statistics.json`, `embodiment_id.json`: `groot.model.n16_processor_files`). Loading builds the model
on the meta device and assigns the stored tensors straight into it, so nothing is initialised twice and
the 3B model loads at disk speed.
"""

from __future__ import annotations

import json
import logging
import re
from collections import Counter
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from tqdm import tqdm

from groot.errors import CheckpointError
from groot.model.config import GR00TN15Config, GR00TN16Config
from groot.model.gr00t_n15 import GR00TN15
from groot.model.gr00t_n16 import model_class
from groot.model.n16_processor_files import write_n16_processor_files
from groot.utils.files import atomic_dir

log = logging.getLogger(__name__)

CONFIG_FILE = "config.json"
SINGLE_FILE = "model.safetensors"
SHARD_PATTERN = "model{suffix}.safetensors"  # -> model-00001-of-00002.safetensors
INDEX_FILE = "model.safetensors.index.json"
METADATA_FILE = "experiment_cfg/metadata.json"
DATA_CONFIG_FILE = "experiment_cfg/data_config.json"
TOKENIZER_DIR = "tokenizer"
HUB_ID = re.compile(r"[\w.-]+/[\w.-]+")
HUB_PATTERNS = ["*.json", "*.safetensors", f"{TOKENIZER_DIR}/*"]
POOLING_HEAD_PREFIX = "backbone.eagle_model.vision_model.vision_model.head."
TIED_LM_HEAD_KEY = "backbone.eagle_model.language_model.lm_head.weight"
STATE_DROPOUT_TOKEN = "action_head.mask_token"  # N1.6: created by the model, not stored in the release

_SIZE_UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
               "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}


# ---- key reports -------------------------------------------------------------------------------------
def vlm_key(key: str, config: GR00TN15Config) -> str:
    """An N1.5 backbone key (`backbone.eagle_model.*`) under the config's VLM name
    (N1.6: `backbone.model.*`)."""
    vlm = model_class(config).backbone_class.vlm_attribute
    return key.replace("backbone.eagle_model.", f"backbone.{vlm}.", 1)


def describe_keys(keys: list[str], limit: int = 8) -> str:
    """Group parameter names by pattern (layer indices -> `*`): 'N keys: pattern (xcount), ...'."""
    patterns = Counter(re.sub(r"\.\d+\.", ".*.", key) for key in keys)
    shown = [f"{pattern} (x{count})" if count > 1 else pattern
             for pattern, count in list(patterns.items())[:limit]]
    more = len(patterns) - len(shown)
    tail = f", ... and {more} more pattern(s)" if more > 0 else ""
    return f"{len(keys)} key(s): " + ", ".join(shown) + tail


# ---- saving ------------------------------------------------------------------------------------------
def parse_size(size: int | str) -> int:
    """'2GB' -> 2_000_000_000, '500MiB' -> 524_288_000, 1234 -> 1234."""
    if isinstance(size, int):
        return size
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?I?B?)\s*", size.upper())
    if not match:
        raise ValueError(f"max_shard_size: expected a byte count like '2GB' or '500MiB', found {size!r}")
    return int(float(match.group(1)) * _SIZE_UNITS[match.group(2)])


def _unique_tensors(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Drop tensors that share storage with an earlier one (the tied lm_head is stored once)."""
    seen: set[tuple[int, tuple[int, ...]]] = set()
    unique = {}
    for name, tensor in state.items():
        ident = (tensor.untyped_storage().data_ptr() + tensor.storage_offset() * tensor.element_size(),
                 tuple(tensor.shape))
        if tensor.numel() > 0 and ident in seen:
            continue
        seen.add(ident)
        unique[name] = tensor
    return unique


def _dtype_name(state: dict[str, torch.Tensor]) -> str:
    """The dtype of the first floating-point tensor (the first parameter of a module's state dict)."""
    first = next((t for t in state.values() if t.is_floating_point()), None)
    return str(first.dtype if first is not None else torch.float32).removeprefix("torch.")


def _to_json(obj: Any) -> Any:
    """DatasetMetadata / DataConfig objects (anything with to_dict) -> plain JSON values."""
    if hasattr(obj, "to_dict"):
        return obj.to_dict()
    if isinstance(obj, dict):
        return {key: _to_json(value) for key, value in obj.items()}
    return obj


def _write_json(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(_to_json(obj), indent=2) + "\n")


def nonfinite_tensor(state: dict[str, torch.Tensor]) -> tuple[str, str] | None:
    """(name, 'N NaN / inf of M values') of the first floating tensor holding a non-finite value;
    None when all are finite."""
    for name, tensor in state.items():
        if tensor.is_floating_point() and tensor.device.type != "meta":
            finite = torch.isfinite(tensor)
            if not bool(finite.all()):
                return name, f"{int((~finite).sum())} NaN / inf of {tensor.numel()} values"
    return None


def _write_weights(state: dict[str, torch.Tensor], out: Path, max_shard_size: int | str) -> None:
    """model.safetensors, or model-0000k-of-0000n.safetensors + model.safetensors.index.json when the
    unique tensors exceed max_shard_size (split in key order by `huggingface_hub`; a tensor larger
    than the limit gets a shard of its own). Tensors move to the host one shard at a time."""
    from huggingface_hub import split_torch_state_dict_into_shards

    state = _unique_tensors(state)
    split = split_torch_state_dict_into_shards(state, filename_pattern=SHARD_PATTERN,
                                               max_shard_size=parse_size(max_shard_size))
    shards = split.filename_to_tensors.items()
    for name, keys in tqdm(shards, desc="saving shards", disable=not split.is_sharded):
        save_file({k: state[k].detach().to("cpu").contiguous() for k in keys}, str(out / name),
                  metadata={"format": "pt"})
    if split.is_sharded:
        _write_json(out / INDEX_FILE, {"metadata": split.metadata, "weight_map": split.tensor_to_filename})


def save_pretrained(model: GR00TN15, directory: str | Path, metadata: dict[str, Any] | None = None,
                    data_config: Any = None, max_shard_size: int | str = "2GB",
                    tokenizer: Any = None) -> Path:
    """Write a checkpoint directory atomically (temp dir + rename; an existing one is replaced).

    metadata: {embodiment_tag: DatasetMetadata | dict} -> experiment_cfg/metadata.json;
    data_config: DataConfig | dict -> experiment_cfg/data_config.json; tokenizer: saved under
    tokenizer/ when it has `save_pretrained(dir)` (the built-in byte tokenizer needs no files).
    An N1.6 model also gets processor_config.json, statistics.json and embodiment_id.json from the
    same metadata and data config (`n16_processor_files.write_n16_processor_files`)."""
    return save_state_dict(model.config, model.state_dict(), directory, metadata=metadata,
                           data_config=data_config, max_shard_size=max_shard_size, tokenizer=tokenizer)


def save_state_dict(config: GR00TN15Config, state: dict[str, torch.Tensor], directory: str | Path,
                    metadata: dict[str, Any] | None = None, data_config: Any = None,
                    max_shard_size: int | str = "2GB", tokenizer: Any = None,
                    extra_files: dict[str, str] | None = None) -> Path:
    """`save_pretrained` from a config and a full state dict (e.g. gathered from a sharded FSDP model);
    `state` has the keys of `GR00TN15(config).state_dict()` (tied tensors may be left out). A state with
    a NaN / inf is refused (CheckpointError naming the tensor) before anything is written.
    extra_files: {path relative to the directory: text} written in the same atomic step."""
    out = Path(directory).resolve()
    bad = nonfinite_tensor(state)
    if bad is not None:
        raise CheckpointError(f"{out}: tensor {bad[0]!r}: expected finite weights, found {bad[1]}; "
                              "nothing was written")
    with atomic_dir(out, tag="tmp", replace=True) as tmp:
        config_dict = config.to_dict()
        config_dict["torch_dtype"] = _dtype_name(state)
        _write_json(tmp / CONFIG_FILE, config_dict)
        _write_weights(state, tmp, max_shard_size)
        if metadata is not None:
            _write_json(tmp / METADATA_FILE, metadata)
        if data_config is not None:
            _write_json(tmp / DATA_CONFIG_FILE, data_config)
        if isinstance(config, GR00TN16Config):
            write_n16_processor_files(tmp, config, metadata, data_config)
        if tokenizer is not None and hasattr(tokenizer, "save_pretrained"):
            tokenizer.save_pretrained(tmp / TOKENIZER_DIR)
        for name, text in (extra_files or {}).items():
            (tmp / name).parent.mkdir(parents=True, exist_ok=True)
            (tmp / name).write_text(text)
    return out


# ---- loading -----------------------------------------------------------------------------------------
def resolve_checkpoint_dir(path_or_hub_id: str | Path, revision: str | None = None, *,
                           token: str | bool | None = None, cache_dir: str | Path | None = None,
                           local_files_only: bool = False) -> Path:
    """A local directory as is; an `owner/name` that is not a local path is fetched from the hub
    (json + safetensors + tokenizer files only) at `revision` (branch, tag or commit; default main),
    with `token`, into `cache_dir`; `local_files_only` uses the cache and never the network."""
    path = Path(path_or_hub_id).expanduser()
    if path.is_dir():
        return path
    if path.exists() or not HUB_ID.fullmatch(str(path_or_hub_id)):
        raise CheckpointError(f"{path}: expected a checkpoint directory (or a hub id 'owner/name'), found "
                              f"{'a file' if path.exists() else 'nothing'}")
    from groot.model.hub import download_snapshot

    try:
        return download_snapshot(str(path_or_hub_id), HUB_PATTERNS, revision=revision, token=token,
                                 cache_dir=cache_dir, local_files_only=local_files_only)
    except Exception as err:
        where = "the local hub cache" if local_files_only else "the Hugging Face hub"
        raise CheckpointError(f"{path_or_hub_id}: not a local directory, and fetching it from {where} "
                              f"failed: {err}") from err


def weight_files(root: Path) -> list[Path]:
    """The safetensors files of a checkpoint: from the shard index, else model.safetensors."""
    index = root / INDEX_FILE
    if index.is_file():
        weight_map = json.loads(index.read_text()).get("weight_map")
        if not isinstance(weight_map, dict) or not weight_map:
            raise CheckpointError(f"{index}: key 'weight_map': expected a non-empty mapping, found "
                                  f"{weight_map!r}")
        files = [root / name for name in dict.fromkeys(weight_map.values())]
    else:
        files = [root / SINGLE_FILE]
    missing = [f.name for f in files if not f.is_file()]
    if missing:
        raise CheckpointError(f"{root}: expected weight file(s) {missing} (from "
                              f"{INDEX_FILE if index.is_file() else 'the default name'}), found none")
    return files


def read_config(root: Path) -> GR00TN15Config:
    path = root / CONFIG_FILE
    if not path.is_file():
        raise CheckpointError(f"{path}: expected the model config, found no file")
    config = json.loads(path.read_text())
    if not isinstance(config, dict):
        raise CheckpointError(f"{path}: expected a JSON object, found {type(config).__name__}")
    if config.get("model_type") == "Gr00tN1d6":  # groot's layout or the official flat one
        return GR00TN16Config.from_dict(config, source=str(path))
    return GR00TN15Config.from_dict(config)


def stored_keys(files: list[Path]) -> list[str]:
    """Tensor names from the safetensors headers (no tensor data is read)."""
    keys: list[str] = []
    for file in files:
        with safe_open(str(file), framework="pt") as handle:
            keys.extend(handle.keys())
    return keys


def checkpoint_config(root: Path) -> GR00TN15Config:
    """config.json, with the SigLIP pooling head kept only when the weights contain it."""
    config = read_config(root)
    stored = stored_keys(weight_files(root))
    prefix = vlm_key(POOLING_HEAD_PREFIX, config)
    config.backbone_cfg.vision.with_pooling_head = any(k.startswith(prefix) for k in stored)
    return config


def _check_keys(root: Path, expected: dict[str, torch.Tensor], loaded: dict[str, torch.Tensor],
                config: GR00TN15Config) -> None:
    tie_lm_head = config.backbone_cfg.llm.tie_word_embeddings
    tolerated = ({vlm_key(TIED_LM_HEAD_KEY, config)} if tie_lm_head else set()) | {STATE_DROPOUT_TOKEN}
    missing = [k for k in expected if k not in loaded and k not in tolerated]
    unexpected = [k for k in loaded if k not in expected]
    wrong_shape = [f"{k}: expected {tuple(expected[k].shape)}, found {tuple(loaded[k].shape)}"
                   for k in expected if k in loaded and loaded[k].shape != expected[k].shape]
    if unexpected:
        log.warning("%s: ignoring %s", root, describe_keys(unexpected))
        for key in unexpected:
            del loaded[key]
    if missing or wrong_shape:
        problems = []
        if missing:
            problems.append(f"missing {describe_keys(missing)}")
        if wrong_shape:
            problems.append(f"{len(wrong_shape)} shape mismatch(es): " + "; ".join(wrong_shape[:5]))
        raise CheckpointError(f"{root}: weights do not fit the model built from config.json: "
                              + " | ".join(problems))


def load_pretrained(path_or_hub_id: str | Path, dtype: torch.dtype | None = None,
                    device: str | torch.device | None = None, revision: str | None = None, *,
                    token: str | bool | None = None, cache_dir: str | Path | None = None,
                    local_files_only: bool = False) -> GR00TN15:
    """Load a groot or official N1.5 checkpoint, or a groot N1.6 one, into its model class in eval mode.

    dtype: cast floating weights (None keeps the stored dtype); device: where the weights are read to
    (default cpu); revision, token, cache_dir, local_files_only: see `resolve_checkpoint_dir`. A missing
    tied lm_head is re-tied; an absent SigLIP pooling head is dropped from the model; an absent N1.6
    `mask_token` is drawn as 0.02 N(0, 1) (as the original fine-tuning setup does); other missing keys,
    and a NaN / inf in any tensor (named with its file), raise CheckpointError; unexpected keys are
    reported and ignored."""
    root = resolve_checkpoint_dir(path_or_hub_id, revision, token=token, cache_dir=cache_dir,
                                  local_files_only=local_files_only)
    config = checkpoint_config(root)
    files = weight_files(root)
    with torch.device("meta"):
        model = model_class(config)(config)
    target = str(torch.device(device)) if device is not None else "cpu"
    loaded: dict[str, torch.Tensor] = {}
    file_of: dict[str, str] = {}
    for file in tqdm(files, desc="loading shards", disable=len(files) == 1):
        tensors = load_file(str(file), device=target)
        loaded.update(tensors)
        file_of.update(dict.fromkeys(tensors, file.name))
    _check_keys(root, model.state_dict(), loaded, config)
    stored = loaded
    if dtype is not None:
        loaded = {k: v.to(dtype) if v.is_floating_point() else v for k, v in loaded.items()}
    bad = nonfinite_tensor(loaded)
    if bad is not None:
        name, found = bad
        cast = "" if nonfinite_tensor({name: stored[name]}) else f" after the cast to {dtype}"
        raise CheckpointError(f"{root / file_of[name]}: tensor {name!r}: expected finite weights, "
                              f"found {found}{cast}")
    model.load_state_dict(loaded, strict=False, assign=True)
    model.tie_weights()
    head = model.action_head
    if head.mask_token is not None and head.mask_token.is_meta:  # absent from the N1.6 release
        token_dtype = dtype or head.state_encoder.layer1.W.dtype
        head.mask_token = torch.nn.Parameter(0.02 * torch.randn(head.mask_token.shape, device=target,
                                                                dtype=token_dtype))
    still_meta = [name for name, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
    if still_meta:
        raise CheckpointError(f"{root}: no weights for {describe_keys(still_meta)}")
    bb, ah = config.backbone_cfg, config.action_head_cfg
    model.set_trainable(bb.tune_llm, bb.tune_visual, ah.tune_projector, ah.tune_diffusion_model)
    return model.eval()
