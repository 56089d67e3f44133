"""Atomic writes: the target holds the old content or the new, never a part; nothing is left behind."""

from __future__ import annotations

import json
import os
import stat

import numpy as np
import pytest

from groot.utils.files import atomic_dir, atomic_open, atomic_write_json, atomic_write_text


def test_a_write_replaces_the_file_and_leaves_no_temp(tmp_path):
    target = tmp_path / "stats.json"
    target.write_text("old")
    atomic_write_json(target, {"a": [1, 2]})
    assert json.loads(target.read_text()) == {"a": [1, 2]}
    atomic_write_text(target, "new")
    assert target.read_text() == "new"
    assert os.listdir(tmp_path) == ["stats.json"]


def test_a_failed_write_keeps_the_old_file(tmp_path):
    target = tmp_path / "frames.npy"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError, match="disk full"), atomic_open(target, "wb") as handle:
        handle.write(b"half")
        raise RuntimeError("disk full")
    assert target.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["frames.npy"]
    with pytest.raises(TypeError):  # a value JSON cannot hold: nothing is written
        atomic_write_json(tmp_path / "new.json", {"a": object()})
    assert os.listdir(tmp_path) == ["frames.npy"]


def test_binary_writes_round_trip(tmp_path):
    array = np.arange(12, dtype=np.uint8).reshape(3, 4)
    with atomic_open(tmp_path / "a.npy", "wb") as handle:
        np.save(handle, array, allow_pickle=False)
    assert np.array_equal(np.load(tmp_path / "a.npy"), array)


def test_files_get_the_permissions_of_a_plain_open(tmp_path):
    before = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "shared.json", "{}")
    finally:
        os.umask(before)
    assert stat.S_IMODE((tmp_path / "shared.json").stat().st_mode) == 0o644


def test_a_folder_appears_whole_or_not_at_all(tmp_path):
    target = tmp_path / "deep" / "dataset"
    with pytest.raises(RuntimeError), atomic_dir(target, tag="partial") as staging:
        assert staging.parent == target.parent and staging.name.startswith(".dataset.partial-")
        (staging / "half").write_text("x")
        raise RuntimeError
    assert os.listdir(target.parent) == []
    with atomic_dir(target, tag="partial") as staging:
        (staging / "info.json").write_text("{}")
        assert not target.exists()
    assert os.listdir(target) == ["info.json"]
    assert os.listdir(target.parent) == ["dataset"]


def test_a_folder_replaces_an_existing_one_only_when_asked(tmp_path):
    target = tmp_path / "checkpoint"
    target.mkdir()
    (target / "old.json").write_text("{}")
    with pytest.raises(OSError), atomic_dir(target) as staging:
        (staging / "new.json").write_text("{}")
    assert os.listdir(target) == ["old.json"]
    with atomic_dir(target, replace=True) as staging:
        (staging / "new.json").write_text("{}")
    assert os.listdir(target) == ["new.json"]
    assert os.listdir(tmp_path) == ["checkpoint"]
