import os
import random
import signal
import subprocess
import sys
import textwrap

import numpy as np
import torch
from torch import nn
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_optimizer_state_dict,
    set_optimizer_state_dict,
)

from groot.train import checkpointing as ckpt
from groot.train.optim import build_optimizer, parameter_groups


def _model_and_optimizer(seed):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(3, 5), nn.LayerNorm(5), nn.Linear(5, 2))
    return model, build_optimizer(parameter_groups(model, 0.01), learning_rate=1e-2)


def _step(model, optimizer, seed):
    x = torch.randn(4, 3, generator=torch.Generator().manual_seed(seed))
    model(x).pow(2).mean().backward()
    optimizer.step()
    optimizer.zero_grad()


def test_optimizer_state_round_trip_continues_identically(tmp_path):
    model, optimizer = _model_and_optimizer(0)
    for seed in range(3):
        _step(model, optimizer, seed)
    state = get_optimizer_state_dict(model, optimizer, options=StateDictOptions(full_state_dict=True))
    ckpt.save_optimizer_state(state, tmp_path)
    assert not any(p.suffix in (".pt", ".pkl", ".bin") for p in tmp_path.iterdir())

    twin, twin_optimizer = _model_and_optimizer(1)
    twin.load_state_dict(model.state_dict())
    set_optimizer_state_dict(twin, twin_optimizer, ckpt.load_optimizer_state(tmp_path),
                             options=StateDictOptions(full_state_dict=True))
    _step(model, optimizer, 10)
    _step(twin, twin_optimizer, 10)
    for a, b in zip(model.parameters(), twin.parameters(), strict=True):
        assert torch.equal(a, b)


def test_rng_state_round_trip(tmp_path):
    torch.manual_seed(3)
    random.seed(3)
    np.random.seed(3)
    ckpt.save_rng_state(tmp_path, rank=0)
    expected = (torch.rand(3), random.random(), np.random.rand())
    torch.manual_seed(99)
    random.seed(99)
    np.random.seed(99)
    ckpt.load_rng_state(tmp_path, rank=0)
    assert torch.equal(torch.rand(3), expected[0])
    assert random.random() == expected[1] and np.random.rand() == expected[2]


def test_cuda_rng_states_return_to_their_devices_with_ten_or_more_gpus(tmp_path, monkeypatch):
    states = [torch.full((16,), device, dtype=torch.uint8) for device in range(12)]  # one per GPU
    restored = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: len(states))
    monkeypatch.setattr(torch.cuda, "get_rng_state_all", lambda: states)
    monkeypatch.setattr(torch.cuda, "set_rng_state_all", restored.extend)
    ckpt.save_rng_state(tmp_path, rank=0)
    ckpt.load_rng_state(tmp_path, rank=0)
    assert [int(state[0]) for state in restored] == list(range(12))  # not 0, 1, 10, 11, 2, ...


def _checkpoint_files(directory, step):
    """What `is_complete` looks for: config, weights, optimizer and trainer state."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.json").write_text("{}")
    (directory / "model.safetensors").write_bytes(b"x")
    (directory / ckpt.STATE_DIR).mkdir(exist_ok=True)
    (directory / ckpt.STATE_DIR / "optimizer.json").write_text("{}")
    ckpt.save_trainer_state(directory / ckpt.STATE_DIR, {"global_step": step})


def _fake_checkpoint(output_dir, step):
    _checkpoint_files(ckpt.begin_checkpoint(output_dir, step), step)
    return ckpt.commit_checkpoint(output_dir, step)


def _names(directory):
    return sorted(p.name for p in directory.iterdir())


def test_latest_ignores_incomplete_and_rotation_keeps_newest(tmp_path):
    for step in (1, 2, 3):
        _fake_checkpoint(tmp_path, step)
    (tmp_path / "checkpoint-9").mkdir()  # no trainer state: incomplete
    ckpt.temp_dir(tmp_path, 10).mkdir()
    assert ckpt.latest_checkpoint(tmp_path) == tmp_path / "checkpoint-3"
    ckpt.rotate_checkpoints(tmp_path, keep=2)
    assert [s for s, _ in ckpt.list_checkpoints(tmp_path)] == [2, 3]
    ckpt.clean_leftovers(tmp_path, keep=2)
    assert _names(tmp_path) == ["checkpoint-2", "checkpoint-3", "checkpoint-9"]


def test_a_checkpoint_missing_any_part_is_incomplete(tmp_path):
    for part in ("config.json", "model.safetensors", "training_state/optimizer.json",
                 "training_state/trainer_state.json"):
        path = _fake_checkpoint(tmp_path, 1)
        assert ckpt.is_complete(path)
        (path / part).unlink()
        assert not ckpt.is_complete(path), part
    (path / "model.safetensors.index.json").write_text("{}")  # sharded weights
    _checkpoint_files(path, 1)
    (path / "model.safetensors").unlink()
    assert ckpt.is_complete(path)


def test_delete_killed_after_the_rename_leaves_no_checkpoint_behind(tmp_path):
    """A kill between the rename and the end of the delete (simulated: the rename done, part of the
    files deleted) leaves a folder no scan counts; start-up removes it."""
    for step in (1, 2, 3):
        _fake_checkpoint(tmp_path, step)
    doomed = ckpt._move_aside(tmp_path / "checkpoint-1")  # the first half of delete_checkpoint
    (doomed / "model.safetensors").unlink()
    assert [s for s, _ in ckpt.list_checkpoints(tmp_path)] == [2, 3]
    ckpt.clean_leftovers(tmp_path, keep=2)
    assert _names(tmp_path) == ["checkpoint-2", "checkpoint-3"]


def test_start_up_cleans_what_killed_saves_and_deletes_left(tmp_path):
    """Hand-made leftovers of every kind; `clean_leftovers(keep=2)` leaves the two newest complete
    checkpoints and the incomplete folder newer than them (not a leftover of a delete)."""
    for step in (4, 5, 6, 7):
        _fake_checkpoint(tmp_path, step)  # 4 complete: one more than keep + 1 (a killed rotation)
    ckpt._move_aside(tmp_path / "checkpoint-4")  # a delete killed after its rename
    half_deleted = tmp_path / ".deleting-checkpoint-3"
    _checkpoint_files(half_deleted, 3)
    (half_deleted / "config.json").unlink()
    # deleted in place by an older groot, killed half-way: weights gone, trainer state left ...
    _checkpoint_files(tmp_path / "checkpoint-2", 2)
    (tmp_path / "checkpoint-2" / "model.safetensors").unlink()
    # ... or trainer state gone, weights left
    _checkpoint_files(tmp_path / "checkpoint-1", 1)
    (tmp_path / "checkpoint-1" / ckpt.STATE_DIR / ckpt.TRAINER_STATE).unlink()
    _checkpoint_files(ckpt.temp_dir(tmp_path, 8), 8)  # a save killed before its rename
    (tmp_path / "..tmp-checkpoint-8.tmp-0123abcd").mkdir()  # the model writer's own temp folder
    (tmp_path / "checkpoint-9").mkdir()  # incomplete, newer than every complete one: not ours to judge
    (tmp_path / "metrics.jsonl").write_text("")
    ckpt.clean_leftovers(tmp_path, keep=2)
    assert _names(tmp_path) == ["checkpoint-6", "checkpoint-7", "checkpoint-9", "metrics.jsonl"]
    assert ckpt.latest_checkpoint(tmp_path) == tmp_path / "checkpoint-7"


def test_saving_a_step_again_replaces_it_by_rename(tmp_path):
    _fake_checkpoint(tmp_path, 1)
    tmp = ckpt.begin_checkpoint(tmp_path, 1)
    _checkpoint_files(tmp, 1)
    (tmp / "marker").write_text("new")
    final = ckpt.commit_checkpoint(tmp_path, 1)
    assert (final / "marker").read_text() == "new"
    assert _names(tmp_path) == ["checkpoint-1"]


_KILLED_WRITER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from groot.train import checkpointing as ckpt
    out = Path(sys.argv[1])
    tmp = ckpt.begin_checkpoint(out, 2)
    tmp.mkdir()
    with open(tmp / "model.safetensors", "wb") as f:
        f.write(b"partial")
        f.flush()
        print("writing", flush=True)
        time.sleep(60)  # killed here, in the middle of the save
    ckpt.save_trainer_state(tmp / ckpt.STATE_DIR, {"global_step": 2})
    ckpt.commit_checkpoint(out, 2)
""")


def test_sigkill_while_saving_keeps_previous_checkpoint(tmp_path):
    model, optimizer = _model_and_optimizer(0)
    _step(model, optimizer, 0)
    first = _fake_checkpoint(tmp_path, 1)
    ckpt.save_optimizer_state(get_optimizer_state_dict(model, optimizer), first / ckpt.STATE_DIR)
    process = subprocess.Popen([sys.executable, "-c", _KILLED_WRITER, str(tmp_path)], stdout=subprocess.PIPE,
                               text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        assert process.stdout.readline().strip() == "writing"
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == -signal.SIGKILL
    assert ckpt.temp_dir(tmp_path, 2).exists()  # the half-written save is there ...
    latest = ckpt.latest_checkpoint(tmp_path)  # ... but resume picks the complete one
    assert latest == first
    assert ckpt.load_trainer_state(latest)["global_step"] == 1
    state = ckpt.load_optimizer_state(latest / ckpt.STATE_DIR)
    assert set(state["state"]) == {name for name, _ in model.named_parameters()}
    ckpt.clean_leftovers(tmp_path, keep=0)
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint-1"]
