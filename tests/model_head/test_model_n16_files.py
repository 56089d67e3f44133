"""N1.6 checkpoint processor files: processor_config.json, statistics.json, embodiment_id.json.

Layout from NVIDIA/Isaac-GR00T @ 005e8a4f `gr00t/model/gr00t_n1d6/processing_gr00t_n1d6.py`
(`save_pretrained` / `from_pretrained`); the hand-written directory follows the LIBERO and Unitree G1
modality configs of GROOT_N16_SPEC §5.
"""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from groot.data.configs import DataConfig
from groot.data.embodiment import N16_EMBODIMENT_INDICES
from groot.data.metadata import STAT_NAMES, DatasetMetadata
from groot.data.modality import ModalityConfig
from groot.errors import CheckpointError, DatasetError
from groot.model.gr00t_n15 import GR00TN15
from groot.model.gr00t_n16 import GR00TN16
from groot.model.n16_processor_files import (
    load_n16_metadata,
    read_n16_processor_files,
)

OFFICIAL_KWARGS = {"modality_configs", "image_crop_size", "image_target_size", "use_albumentations",
                   "random_rotation_angle", "color_jitter_params", "shortest_image_edge", "crop_fraction",
                   "model_name", "model_type", "formalize_language", "max_state_dim", "max_action_dim",
                   "max_action_horizon", "use_percentiles", "clip_outliers", "apply_sincos_state_encoding",
                   "use_relative_action"}


def _stats(dim: int, offset: float = 0.0, steps: int | None = None) -> dict[str, list]:
    def row(k: int) -> list[float]:
        return [offset + k + 0.25 * i for i in range(dim)]

    return {stat: [row(k + t) for t in range(steps)] if steps else row(k)
            for k, stat in enumerate(STAT_NAMES)}


def _info(dim: int, absolute: bool = True) -> dict:
    return {"absolute": absolute, "rotation_type": None, "shape": [dim], "continuous": True}


def _metadata() -> DatasetMetadata:
    return DatasetMetadata(
        statistics={"state": {"arm": _stats(3), "gripper": _stats(1, 5.0)},
                    "action": {"arm": _stats(3, 1.0), "gripper": _stats(1, 6.0)},
                    "relative_action": {"arm": _stats(3, -1.0, steps=4)}},
        modalities={"video": {"front": {"resolution": [84, 56], "channels": 3, "fps": 20}},
                    "state": {"arm": _info(3), "gripper": _info(1)},
                    "action": {"arm": _info(3, absolute=False), "gripper": _info(1)}},
        embodiment_tag="new_embodiment")


def _data_config() -> DataConfig:
    return DataConfig(name="two_groups", video_keys=["video.front"],
                      state_keys=["state.arm", "state.gripper"], action_keys=["action.arm", "action.gripper"],
                      language_keys=["annotation.human.task_description"], action_indices=list(range(4)),
                      state_normalization={"state.arm": "mean_std"},
                      action_normalization={"action.arm": "min_max", "action.gripper": "mean_std"})


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    torch.manual_seed(0)
    model = GR00TN16.from_preset("n1.6-tiny")
    out = model.save_pretrained(tmp_path_factory.mktemp("n16") / "ckpt",
                                metadata={"new_embodiment": _metadata()}, data_config=_data_config())
    return out


def test_saving_writes_the_three_files_in_the_original_layout(saved):
    assert (saved / "experiment_cfg" / "metadata.json").is_file()
    assert (saved / "experiment_cfg" / "data_config.json").is_file()
    processor = json.loads((saved / "processor_config.json").read_text())
    assert processor["processor_class"] == "Gr00tN1d6Processor"
    kwargs = processor["processor_kwargs"]
    assert set(kwargs) == OFFICIAL_KWARGS
    assert (kwargs["max_state_dim"], kwargs["max_action_dim"], kwargs["max_action_horizon"]) == (32, 32, 16)
    assert kwargs["formalize_language"] and kwargs["use_relative_action"] and not kwargs["use_percentiles"]
    assert kwargs["model_name"] == "nvidia/Eagle-Block2A-2B-v2"
    modality = kwargs["modality_configs"]["new_embodiment"]
    assert modality["video"] == {"delta_indices": [0], "modality_keys": ["front"],
                                 "sin_cos_embedding_keys": None, "mean_std_embedding_keys": None,
                                 "action_configs": None}
    assert modality["state"]["mean_std_embedding_keys"] == ["arm"]
    assert modality["action"]["delta_indices"] == [0, 1, 2, 3]
    assert modality["action"]["mean_std_embedding_keys"] == ["gripper"]
    assert [c["rep"] for c in modality["action"]["action_configs"]] == ["RELATIVE", "ABSOLUTE"]
    assert modality["language"]["modality_keys"] == ["annotation.human.task_description"]
    statistics = json.loads((saved / "statistics.json").read_text())
    assert statistics == {"new_embodiment": _metadata().statistics}
    assert json.loads((saved / "embodiment_id.json").read_text()) == dict(N16_EMBODIMENT_INDICES)
    assert N16_EMBODIMENT_INDICES["new_embodiment"] == 10 and N16_EMBODIMENT_INDICES["libero_panda"] == 2


def test_processor_files_alone_give_back_the_metadata(saved, tmp_path):
    root = tmp_path / "official_style"
    shutil.copytree(saved, root)
    shutil.rmtree(root / "experiment_cfg")
    metadata = load_n16_metadata(root, "new_embodiment")
    original = _metadata()
    assert metadata.statistics == original.statistics and metadata.embodiment_tag == "new_embodiment"
    for group in ("state", "action"):
        for key, info in original.modalities[group].items():
            assert metadata.array_info(group, key) == {**info, "rotation_type": None}
    assert metadata.modalities["video"] == {}  # the official files do not record camera resolutions
    files = read_n16_processor_files(root)
    assert files.modality_config("new_embodiment") == _data_config().modality_config()
    assert files.relative_action_groups("new_embodiment") == ["arm"]
    assert files.embodiment_index("new_embodiment") == 10
    assert load_n16_metadata(root).embodiment_tag == "new_embodiment"  # the only tag
    loaded = GR00TN15.from_pretrained(root)
    assert type(loaded) is GR00TN16


def _write(root, name, content):
    (root / name).write_text(json.dumps(content))


def _entry(indices, keys, **extra):
    return {"delta_indices": indices, "modality_keys": keys, "sin_cos_embedding_keys": None,
            "mean_std_embedding_keys": None, "action_configs": None, **extra}


LIBERO_GROUPS = ["x", "y", "z", "roll", "pitch", "yaw", "gripper"]


@pytest.fixture
def official_dir(tmp_path):
    """A hand-written directory in the release's layout: two tags, the seven-entry embodiment_id.json."""
    language = _entry([0], ["annotation.human.action.task_description"])
    relative = {"rep": "RELATIVE", "type": "NON_EEF", "format": "DEFAULT", "state_key": None}
    absolute = {**relative, "rep": "ABSOLUTE"}
    modality_configs = {
        "libero_panda": {"video": _entry([0], ["image", "wrist_image"]), "state": _entry([0], LIBERO_GROUPS),
                         "action": _entry(list(range(16)), LIBERO_GROUPS), "language": language},
        "unitree_g1": {"video": _entry([0], ["ego_view"]), "state": _entry([0], ["left_arm", "waist"]),
                       "action": _entry(list(range(50)), ["left_arm", "waist"],
                                        action_configs=[relative, absolute]),
                       "language": {**language, "modality_keys": ["annotation.human.task_description"]}},
    }
    _write(tmp_path, "processor_config.json", {"processor_class": "Gr00tN1d6Processor", "processor_kwargs": {
        "modality_configs": modality_configs, "use_relative_action": True, "formalize_language": True,
        "max_state_dim": 128, "max_action_dim": 128, "max_action_horizon": 50}})
    _write(tmp_path, "statistics.json", {
        "libero_panda": {"state": {g: _stats(1) for g in LIBERO_GROUPS},
                         "action": {g: _stats(1, 2.0) for g in LIBERO_GROUPS}},
        "unitree_g1": {"state": {"left_arm": _stats(7), "waist": _stats(3)},
                       "action": {"left_arm": _stats(7), "waist": _stats(3)},
                       "relative_action": {"left_arm": _stats(7, steps=50)}}})
    _write(tmp_path, "embodiment_id.json", {"oxe_google": 0, "oxe_widowx": 1, "libero_panda": 2,
                                            "unitree_g1": 8, "robocasa_panda_omron": 13, "gr1": 20,
                                            "behavior_r1_pro": 24})
    return tmp_path


def test_reading_a_hand_written_official_directory(official_dir):
    files = read_n16_processor_files(official_dir)
    assert files.tags() == ["libero_panda", "unitree_g1"]
    libero = files.metadata("libero_panda")
    assert [libero.dim("state", g) for g in LIBERO_GROUPS] == [1] * 7
    assert all(libero.array_info("action", g)["absolute"] for g in LIBERO_GROUPS)
    config = files.modality_config("libero_panda")
    assert config["video"] == ModalityConfig([0], ["video.image", "video.wrist_image"])
    assert config["action"] == ModalityConfig(list(range(16)), [f"action.{g}" for g in LIBERO_GROUPS])
    assert config["language"].modality_keys == ["annotation.human.action.task_description"]
    g1 = files.metadata("unitree_g1")
    assert g1.dim("action", "left_arm") == 7 and not g1.array_info("action", "left_arm")["absolute"]
    assert g1.array_info("action", "waist")["absolute"]
    assert len(g1.statistics["relative_action"]["left_arm"]["min"]) == 50  # per-step [T, D] kept as stored
    assert files.embodiment_index("libero_panda") == 2
    assert files.embodiment_index("new_embodiment") == 10  # merged from the table, as the original does
    with pytest.raises(CheckpointError, match="exactly one tag block"):
        files.metadata()


def test_relative_groups_need_use_relative_action(official_dir):
    path = official_dir / "processor_config.json"
    config = json.loads(path.read_text())
    config["processor_kwargs"]["use_relative_action"] = False
    path.write_text(json.dumps(config))
    assert load_n16_metadata(official_dir, "unitree_g1").array_info("action", "left_arm")["absolute"]


@pytest.mark.parametrize(("name", "edit", "match"), [
    ("statistics.json", lambda d: d["libero_panda"]["state"]["x"].update(mean=[float("nan")]),
     "statistics.json: expected finite JSON"),
    ("statistics.json", lambda d: d["libero_panda"]["state"]["x"].update(q99=[1.0, 2.0]),
     "statistics.state.x.q99"),
    ("embodiment_id.json", lambda d: d.update(libero_panda="2"),
     "key 'libero_panda': expected a projector index"),
    ("processor_config.json",
     lambda d: d["processor_kwargs"]["modality_configs"]["libero_panda"].pop("video"),
     "key 'processor_kwargs.modality_configs.libero_panda.video'"),
])
def test_malformed_files_name_file_and_key(official_dir, name, edit, match):
    content = json.loads((official_dir / name).read_text())
    edit(content)
    (official_dir / name).write_text(json.dumps(content))
    with pytest.raises((CheckpointError, DatasetError), match=match):
        load_n16_metadata(official_dir, "libero_panda")


def test_missing_files_and_tags_are_reported(official_dir):
    with pytest.raises(CheckpointError, match="expected a block for embodiment tag 'gr1', found tags"):
        load_n16_metadata(official_dir, "gr1")
    (official_dir / "embodiment_id.json").unlink()  # optional, as in the original
    assert read_n16_processor_files(official_dir).embodiment_index("libero_panda") == 2
    (official_dir / "statistics.json").unlink()
    with pytest.raises(CheckpointError, match="statistics.json: expected the N1.6 processor file"):
        load_n16_metadata(official_dir, "libero_panda")
