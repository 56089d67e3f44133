"""Training checkpoints: `output_dir/checkpoint-<step>/`, written atomically, resumable exactly.

Layout of one checkpoint (everything safetensors or JSON; nothing is unpickled on resume):

    config.json, model*.safetensors, experiment_cfg/...   the model (`groot.model.checkpoint`)
    training_state/optimizer.safetensors                 every optimizer state tensor, key
                                                          "<param fqn>/<state key>"
    training_state/optimizer.json                        param groups (hyper-parameters, param fqns)
                                                          and the non-tensor per-parameter state
    training_state/rng-rank<r>.safetensors / .json       torch (CPU, CUDA) / python, numpy RNG states
    training_state/trainer_state.json                    step, epoch, scheduler, sampler, config, the
                                                          resolved TrainPlan (written last)

A checkpoint is first written to `.tmp-checkpoint-<step>`, every file fsynced, then renamed; a folder
that leaves (rotation, or a step saved again) is first renamed to `.deleting-checkpoint-<step>`, then
deleted. Renames are atomic, so a `checkpoint-<step>` folder is always whole and a run killed at any
point leaves only dot-folders besides, which no checkpoint scan matches and `clean_leftovers` removes
(with the rotation that a kill interrupted); the previous checkpoints stay intact.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from groot.errors import CheckpointError
from groot.model.checkpoint import CONFIG_FILE, INDEX_FILE, SINGLE_FILE

STATE_DIR = "training_state"
TRAINER_STATE = "trainer_state.json"
_CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")
_TEMP_PREFIX = ".tmp-checkpoint-"
_DELETING_PREFIX = ".deleting-"


# ---- directory handling ------------------------------------------------------------------------
def checkpoint_dir(output_dir: Path, step: int) -> Path:
    return Path(output_dir) / f"checkpoint-{step}"


def temp_dir(output_dir: Path, step: int) -> Path:
    return Path(output_dir) / f"{_TEMP_PREFIX}{step}"


def is_complete(path: Path) -> bool:
    """A `checkpoint-<step>` folder with config, weights, optimizer and trainer state."""
    state = path / STATE_DIR
    return (_CHECKPOINT_RE.match(path.name) is not None and (path / CONFIG_FILE).is_file()
            and ((path / SINGLE_FILE).is_file() or (path / INDEX_FILE).is_file())
            and (state / "optimizer.json").is_file() and (state / TRAINER_STATE).is_file())


def list_checkpoints(output_dir: Path) -> list[tuple[int, Path]]:
    """Complete checkpoints, oldest first."""
    output_dir = Path(output_dir)
    if not output_dir.is_dir():
        return []
    found = []
    for path in output_dir.iterdir():
        match = _CHECKPOINT_RE.match(path.name)
        if match and path.is_dir() and is_complete(path):
            found.append((int(match.group(1)), path))
    return sorted(found)


def latest_checkpoint(output_dir: Path) -> Path | None:
    checkpoints = list_checkpoints(output_dir)
    return checkpoints[-1][1] if checkpoints else None


def clean_leftovers(output_dir: Path, keep: int) -> None:
    """Finish what a killed run left undone: delete half-written (`.tmp-checkpoint-*`) and half-deleted
    (`.deleting-*`) folders, and incomplete `checkpoint-<step>` folders older than the newest complete
    one (deleted in place by a killed run of an older groot); then rotate to `keep`."""
    output_dir = Path(output_dir)
    if not output_dir.is_dir():
        return
    for path in output_dir.iterdir():
        if path.name.startswith((_TEMP_PREFIX, "." + _TEMP_PREFIX, _DELETING_PREFIX)):
            shutil.rmtree(path)
    complete = list_checkpoints(output_dir)
    for path in output_dir.iterdir():
        match = _CHECKPOINT_RE.match(path.name)
        if (match and complete and int(match.group(1)) < complete[-1][0] and path.is_dir()
                and not is_complete(path)):
            delete_checkpoint(path)
    rotate_checkpoints(output_dir, keep)


def rotate_checkpoints(output_dir: Path, keep: int) -> None:
    """Delete the oldest complete checkpoints so that at most `keep` remain (keep <= 0: keep all)."""
    if keep <= 0:
        return
    for _, path in list_checkpoints(output_dir)[:-keep]:
        delete_checkpoint(path)


def delete_checkpoint(path: Path) -> None:
    """Delete a checkpoint folder: renamed out of the checkpoint names first (atomic, made durable), so
    that a kill during the delete leaves a `.deleting-` folder, never a partial `checkpoint-<step>`."""
    shutil.rmtree(_move_aside(path))


def _move_aside(path: Path) -> Path:
    """Rename `path` to `.deleting-<name>` in its folder; returns the new path."""
    doomed = path.parent / f"{_DELETING_PREFIX}{path.name}"
    if doomed.exists():  # left by a killed delete of an earlier folder of this name
        shutil.rmtree(doomed)
    os.replace(path, doomed)
    _fsync_dir(path.parent)
    return doomed


def _fsync_tree(root: Path) -> None:
    for dirpath, _, filenames in os.walk(root):
        for name in filenames:
            with open(os.path.join(dirpath, name), "rb") as f:
                os.fsync(f.fileno())
        _fsync_dir(Path(dirpath))


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def begin_checkpoint(output_dir: Path, step: int) -> Path:
    """Clear and return the temp dir that `commit_checkpoint` will publish as `checkpoint-<step>`
    (not created here: the model writer creates it)."""
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    tmp = temp_dir(output_dir, step)
    if tmp.exists():
        shutil.rmtree(tmp)
    return tmp


def commit_checkpoint(output_dir: Path, step: int) -> Path:
    """Make the temp dir durable, then rename it to `checkpoint-<step>` (one atomic step)."""
    tmp = temp_dir(output_dir, step)
    if not (tmp / STATE_DIR / TRAINER_STATE).is_file():
        raise CheckpointError(f"{tmp}: {STATE_DIR}/{TRAINER_STATE} was not written; not publishing it")
    _fsync_tree(tmp)
    final = checkpoint_dir(output_dir, step)
    replaced = _move_aside(final) if final.exists() else None  # the same step saved again
    os.replace(tmp, final)
    _fsync_dir(Path(output_dir))
    if replaced is not None:
        shutil.rmtree(replaced)
    return final


# ---- optimizer state <-> safetensors + JSON ------------------------------------------------------
def _json_value(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_json_value(v) for v in value]
    if isinstance(value, torch.Tensor):
        return value.item()
    return value


def save_optimizer_state(state: dict, directory: Path) -> None:
    """Write an FQN-keyed optimizer state dict (`{"state": {fqn: {...}}, "param_groups": [...]}`)."""
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for fqn, per_param in state["state"].items():
        for key, value in per_param.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{fqn}/{key}"] = value.detach().cpu().contiguous()
            else:
                scalars.setdefault(fqn, {})[key] = _json_value(value)
    groups = [{k: _json_value(v) for k, v in group.items()} for group in state["param_groups"]]
    directory.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(directory / "optimizer.safetensors"))
    index = {"param_groups": groups, "scalar_state": scalars, "tensor_keys": sorted(tensors)}
    (directory / "optimizer.json").write_text(json.dumps(index, indent=1))


def load_optimizer_state(directory: Path) -> dict:
    """Inverse of `save_optimizer_state`."""
    index_path = directory / "optimizer.json"
    if not index_path.is_file():
        raise CheckpointError(f"{index_path}: missing (the checkpoint has no optimizer state)")
    index = json.loads(index_path.read_text())
    tensors = load_file(str(directory / "optimizer.safetensors"))
    state: dict[str, dict[str, Any]] = {}
    for key, value in tensors.items():
        fqn, _, name = key.rpartition("/")
        state.setdefault(fqn, {})[name] = value
    for fqn, values in index["scalar_state"].items():
        state.setdefault(fqn, {}).update(values)
    groups = []
    for group in index["param_groups"]:
        group = dict(group)
        if "betas" in group:
            group["betas"] = tuple(group["betas"])
        groups.append(group)
    return {"state": state, "param_groups": groups}


# ---- RNG state -------------------------------------------------------------------------------------
def save_rng_state(directory: Path, rank: int) -> None:
    tensors = {"torch_cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, cuda_state in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"torch_cuda_{i}"] = cuda_state
    py_version, py_state, py_gauss = random.getstate()
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state(legacy=True)
    meta = {
        "python": {"version": py_version, "state": list(py_state), "gauss_next": py_gauss},
        "numpy": {"name": np_name, "keys": np_keys.tolist(), "pos": int(np_pos),
                  "has_gauss": int(np_has_gauss), "cached_gaussian": float(np_gauss)},
    }
    directory.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(directory / f"rng-rank{rank}.safetensors"))
    (directory / f"rng-rank{rank}.json").write_text(json.dumps(meta))


def load_rng_state(directory: Path, rank: int) -> None:
    """Restore this rank's RNG streams (a missing file is an error: resume would not be exact)."""
    json_path = directory / f"rng-rank{rank}.json"
    if not json_path.is_file():
        raise CheckpointError(f"{json_path}: missing (saved with a different number of processes?)")
    meta = json.loads(json_path.read_text())
    tensors = load_file(str(directory / f"rng-rank{rank}.safetensors"))
    torch.set_rng_state(tensors["torch_cpu"])
    cuda_keys = [k for k in tensors if k.startswith("torch_cuda_")]
    cuda_states = [tensors[k] for k in sorted(cuda_keys, key=lambda k: int(k.removeprefix("torch_cuda_")))]
    if cuda_states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda_states[: torch.cuda.device_count()])
    py = meta["python"]
    random.setstate((py["version"], tuple(py["state"]), py["gauss_next"]))
    nps = meta["numpy"]
    np.random.set_state((nps["name"], np.asarray(nps["keys"], dtype=np.uint32), nps["pos"],
                         nps["has_gauss"], nps["cached_gaussian"]))


# ---- trainer state ---------------------------------------------------------------------------------
def save_trainer_state(directory: Path, state: dict) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / TRAINER_STATE).write_text(json.dumps(state, indent=1))


def load_trainer_state(checkpoint: Path) -> dict:
    path = Path(checkpoint) / STATE_DIR / TRAINER_STATE
    if not path.is_file():
        raise CheckpointError(f"{path}: missing (not a complete training checkpoint)")
    return json.loads(path.read_text())
