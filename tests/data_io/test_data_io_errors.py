"""Broken modality.json / info.json / missing files: errors name the file and the key."""

from __future__ import annotations

import json
import shutil

import pytest

from groot.data.lerobot import LeRobotDataset
from groot.data.modality import ModalityConfig, ModalitySpec
from groot.errors import DatasetError

GOOD = {"state": {"arm": {"start": 0, "end": 6}, "gripper": {"start": 6, "end": 7}},
        "action": {"arm": {"start": 0, "end": 7, "absolute": False}},
        "video": {"front": {"original_key": "observation.images.front"}},
        "annotation": {"human.action.task_description": {}}}


def _with(path, section, key, entry):
    data = json.loads(json.dumps(GOOD))
    data[section][key] = entry
    path.write_text(json.dumps(data))
    return path


def test_good_modality_defaults(tmp_path):
    spec = ModalitySpec.load(_with(tmp_path / "modality.json", "state", "arm", {"start": 0, "end": 6}))
    assert spec.state["arm"].original_key == "observation.state" and spec.state["arm"].dim == 6
    assert spec.state["arm"].absolute is True and spec.state["arm"].dtype == "float32"
    assert spec.action["arm"].original_key == "action" and spec.action["arm"].absolute is False
    assert spec.video == {"front": "observation.images.front"}
    assert spec.annotation == {"human.action.task_description": "annotation.human.action.task_description"}
    assert ModalitySpec.from_dict(spec.to_dict()) == spec


@pytest.mark.parametrize("entry, key, expected", [
    ({"start": 3, "end": 3}, "state.arm.end", "an integer > start (3), found 3"),
    ({"start": "0", "end": 6}, "state.arm.start", "an integer >= 0"),
    ({"start": 0, "end": 6.0}, "state.arm.end", "an integer > start"),
    ({"start": 0, "end": 7}, "state.gripper.start", ">= 7 (the end of state.arm"),
    ({"start": 0, "end": 6, "rotation_type": "quat"}, "state.arm.rotation_type", "one of axis_angle"),
    ({"start": 0, "end": 6, "absolute": "yes"}, "state.arm.absolute", "true or false"),
    ({"start": 0, "end": 6, "dtype": "floaty"}, "state.arm.dtype", "a numpy dtype"),
])
def test_broken_modality_entries(tmp_path, entry, key, expected):
    path = _with(tmp_path / "modality.json", "state", "arm", entry)
    with pytest.raises(DatasetError) as error:
        ModalitySpec.load(path)
    assert error.value.key == key
    assert "modality.json" in str(error.value) and key in str(error.value) and expected in str(error.value)


def test_unknown_modality_fields_are_ignored_with_a_warning(tmp_path, caplog):
    path = _with(tmp_path / "modality.json", "state", "arm", {"start": 0, "end": 6, "strat": 1})
    spec = ModalitySpec.load(path)
    assert spec.state["arm"].dim == 6
    assert "state.arm.strat" in caplog.text and "modality.json" in caplog.text


def test_modality_not_json(tmp_path):
    (tmp_path / "modality.json").write_text("{state: ")
    with pytest.raises(DatasetError, match="modality.json: expected valid JSON"):
        ModalitySpec.load(tmp_path / "modality.json")


def test_modality_config_json_round_trip():
    config = ModalityConfig(delta_indices=list(range(16)), modality_keys=["action.arm", "action.gripper"])
    assert ModalityConfig.from_json(config.to_json()) == config
    with pytest.raises(DatasetError, match="delta_indices"):
        ModalityConfig.from_dict({"delta_indices": [0.5], "modality_keys": []})


@pytest.fixture
def broken_copy(dataset_root, tmp_path):
    """A writable copy of a session dataset."""
    return shutil.copytree(dataset_root, tmp_path / dataset_root.name)


def _edit_json(path, edit):
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))


def test_slice_wider_than_column(broken_copy):
    _edit_json(broken_copy / "meta/modality.json", lambda d: d["state"]["gripper"].update(end=9))
    expected = r"meta/modality.json: key 'state.gripper.end': expected <= the width of column " \
               r"'observation.state' \(7\), found 9"
    with pytest.raises(DatasetError, match=expected):
        LeRobotDataset(broken_copy)


def test_original_key_not_a_column(broken_copy):
    _edit_json(broken_copy / "meta/modality.json",
               lambda d: d["action"]["arm"].update(original_key="observation.arm"))
    with pytest.raises(DatasetError,
                       match=r"meta/modality.json: key 'action.arm.original_key'.*'observation.arm'"):
        LeRobotDataset(broken_copy)


def test_camera_not_a_video_feature(broken_copy):
    _edit_json(broken_copy / "meta/modality.json",
               lambda d: d["video"]["front"].update(original_key="observation.images.top"))
    with pytest.raises(DatasetError, match=r"meta/info.json: key 'features.observation.images.top'"):
        LeRobotDataset(broken_copy)


@pytest.mark.parametrize("edit, key", [
    (lambda d: d.pop("fps"), "fps"),
    (lambda d: d.update(codebase_version="v1.6"), "codebase_version"),
    (lambda d: d.update(chunks_size=0), "chunks_size"),
    (lambda d: d.pop("data_path"), "data_path"),
])
def test_broken_info(broken_copy, edit, key):
    _edit_json(broken_copy / "meta/info.json", edit)
    with pytest.raises(DatasetError) as error:
        LeRobotDataset(broken_copy)
    assert error.value.key == key and str(error.value).startswith("meta/info.json: key")


def test_info_not_json(broken_copy):
    (broken_copy / "meta/info.json").write_text("not json")
    with pytest.raises(DatasetError, match="meta/info.json: expected valid JSON"):
        LeRobotDataset(broken_copy)


def test_missing_info(tmp_path):
    with pytest.raises(DatasetError, match=r"meta/info.json: expected a LeRobot metadata file, found no"):
        LeRobotDataset(tmp_path)


def test_missing_video_names_expected_path(broken_copy):
    ds = LeRobotDataset(broken_copy)
    path = ds.episode(1).videos["observation.images.wrist"].path
    path.unlink()
    with pytest.raises(DatasetError) as error:
        ds.decode_frames(1, "wrist", [0.0])
    assert error.value.file == str(path) and "no such file" in str(error.value)


def test_missing_parquet_names_expected_path(broken_copy):
    ds = LeRobotDataset(broken_copy)
    path = ds.episode(3).data_path
    path.unlink()
    with pytest.raises(DatasetError) as error:
        ds.episode_data(3)
    assert error.value.file == str(path)


def test_episode_length_mismatch(broken_copy):
    if broken_copy.name == "v2.1":
        lines = (broken_copy / "meta/episodes.jsonl").read_text().splitlines()
        first = json.loads(lines[0])
        first["length"] += 1
        (broken_copy / "meta/episodes.jsonl").write_text("\n".join([json.dumps(first), *lines[1:]]))
    else:
        import pyarrow.compute as pc
        import pyarrow.parquet as pq

        path = next((broken_copy / "meta/episodes").glob("*/*.parquet"))
        table = pq.read_table(path)
        table = table.set_column(table.column_names.index("length"), "length", pc.add(table["length"], 1))
        pq.write_table(table, path)
    with pytest.raises(DatasetError, match=r"key 'episode_index': expected 13 rows for episode 0"):
        LeRobotDataset(broken_copy).episode_data(0)
