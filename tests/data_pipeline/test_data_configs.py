from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from groot.data import configs
from groot.data.configs import DATA_CONFIGS, DataConfig, get_data_config, infer_data_config
from groot.data.embodiment import EMBODIMENT_INDICES, embodiment_index
from groot.data.metadata import STAT_NAMES, DatasetMetadata
from groot.data.modality import ModalitySpec
from groot.data.rotation import convert_rotation
from groot.data.transforms import StateActionSinCos, StateActionTransform
from groot.errors import ConfigError, DatasetError

OFFICIAL = {"fourier_gr1_arms_only", "fourier_gr1_arms_waist", "fourier_gr1_full_upper_body",
            "bimanual_panda_gripper", "bimanual_panda_hand", "single_panda_gripper", "so100", "so100_dualcam",
            "unitree_g1", "unitree_g1_full_body", "oxe_droid", "agibot_genie1"}


def test_registry_has_official_configs_and_libero():
    assert set(DATA_CONFIGS) == OFFICIAL | {"libero_panda"}


@pytest.mark.parametrize("name", sorted(DATA_CONFIGS))
def test_config_builds_and_round_trips(name):
    config = get_data_config(name)
    assert config.name == name
    restored = DataConfig.from_dict(json.loads(json.dumps(config.to_dict())))
    assert restored == config
    modality = config.modality_config()
    assert modality["action"].delta_indices == list(range(16))
    assert modality["video"].delta_indices == [0] and modality["state"].modality_keys == config.state_keys
    chain = config.transform().transforms
    assert isinstance(chain[1], StateActionSinCos if config.state_sincos else StateActionTransform)


def test_table_details():
    gr1 = get_data_config("fourier_gr1_arms_waist")
    assert gr1.state_sincos and gr1.language_keys == ["annotation.human.coarse_action"]
    assert set(gr1.action_normalization.values()) == {"min_max"} and len(gr1.action_keys) == 5
    droid = get_data_config("oxe_droid")
    assert droid.state_target_rotations == {"state.eef_rotation": "rotation_6d"}
    assert droid.action_target_rotations == {"action.eef_rotation_delta": "axis_angle"}
    assert droid.action_normalization == {"action.gripper_position": "binary"}
    single = get_data_config("single_panda_gripper")
    assert single.action_normalization["action.control_mode"] == "binary"
    assert single.action_normalization["action.base_motion"] == "min_max"
    assert get_data_config("agibot_genie1").action_keys[-1] == "action.robot_velocity"
    assert get_data_config("gr1_arms_only") == get_data_config("fourier_gr1_arms_only")


def test_libero_panda_keys():
    libero = get_data_config("libero_panda")
    assert libero.video_keys == ["video.image", "video.wrist_image"]
    assert libero.state_keys == ["state.eef_pos", "state.eef_axis_angle", "state.gripper_qpos"]
    assert libero.action_keys == ["action.eef_delta_pos", "action.eef_delta_rot", "action.gripper"]
    assert libero.language_keys == ["annotation.human.action.task_description"]
    modes = {*libero.state_normalization.values(), *libero.action_normalization.values()}
    assert modes == {"min_max"}
    assert len(libero.state_normalization) == 3 and len(libero.action_normalization) == 3
    assert (libero.crop_scale, libero.image_size) == (0.95, 224)


def test_module_colon_attribute():
    assert get_data_config("groot.data.configs:libero_panda") == configs.libero_panda()
    with pytest.raises(TypeError, match="DataConfig"):
        get_data_config("groot.data.configs:TASK_DESCRIPTION")


def test_errors_name_the_problem():
    with pytest.raises(ValueError, match="libero_panda"):
        get_data_config("no_such_config")
    with pytest.raises(DatasetError, match="state_keys"):
        DataConfig("bad", [], ["arm"], [], [])
    with pytest.raises(DatasetError, match="action_normalization"):
        DataConfig("bad", [], [], ["action.a"], [], action_normalization={"action.a": "minmax"})
    with pytest.raises(DatasetError, match="unknown field"):
        DataConfig.from_dict({**configs.so100().to_dict(), "extra": 1})


def test_embodiment_indices():
    tags = ("new_embodiment", "oxe_droid", "agibot_genie1", "gr1")
    assert [embodiment_index(t) for t in tags] == [31, 17, 26, 24]
    assert embodiment_index("so100") == 2 and embodiment_index("unitree_g1") == 3
    assert all(0 <= i < 32 for i in EMBODIMENT_INDICES.values())
    with pytest.raises(ValueError, match="new_embodiment"):
        embodiment_index("gr2")


def fake_metadata(config: DataConfig, rng: np.random.Generator) -> tuple[DatasetMetadata, dict]:
    """Metadata and a raw step for `config`: 3 dims per key, converted rotations stored as quaternions
    (state, absolute) or Euler angles (action, relative), binary keys as 0 / 1."""
    sources = {**{k: "quaternion" for k in config.state_target_rotations},
               **{k: "euler_angles_rpy" for k in config.action_target_rotations}}
    step, statistics = {}, {"state": {}, "action": {}}
    modalities = {"state": {}, "action": {}, "video": {}}
    for key in config.state_keys + config.action_keys:
        group, name = key.split(".", 1)
        steps = 1 if group == "state" else 16
        if sources.get(key) == "quaternion":
            values = rng.normal(size=(steps, 4))
            values /= np.linalg.norm(values, axis=1, keepdims=True)
        elif {**config.state_normalization, **config.action_normalization}.get(key) == "binary":
            values = rng.integers(0, 2, size=(steps, 1)).astype(float)
        else:
            values = rng.uniform(-1, 1, size=(steps, 3))
        step[key] = values.astype(np.float32)
        statistics[group][name] = {s: (np.full(values.shape[1], -1.0) if s in ("min", "q01") else
                                       np.full(values.shape[1], 1.0)).tolist() for s in STAT_NAMES}
        modalities[group][name] = {"absolute": group == "state", "rotation_type": sources.get(key),
                                   "shape": [values.shape[1]], "continuous": True}
    for key in config.video_keys:
        modalities["video"][key.split(".", 1)[1]] = {"resolution": [40, 30], "channels": 3, "fps": 20.0}
        step[key] = rng.integers(0, 256, size=(1, 30, 40, 3), dtype=np.uint8)
    step[config.language_keys[0]] = ["do the task"]
    return DatasetMetadata(statistics, modalities, "new_embodiment"), step


@pytest.mark.parametrize("name", sorted(DATA_CONFIGS))
def test_registered_chain_runs_and_inverts(name):
    config = dataclasses.replace(get_data_config(name), image_size=28)
    metadata, step = fake_metadata(config, np.random.default_rng(0))
    original = {k: v.copy() for k, v in step.items() if k.startswith("action.")}
    transform = config.transform()
    transform.set_metadata(metadata)
    sample = transform.train().apply(step)
    assert sample["images"].shape == (len(config.video_keys), 28, 28, 3)
    assert sample["language"] == "do the task"
    restored = transform.unapply({"action": sample["action"]})
    for key, values in original.items():
        if key in config.action_target_rotations:  # Euler angles: compare as matrices
            as_matrix = lambda x: convert_rotation(torch.from_numpy(x), "euler_angles_rpy", "matrix")  # noqa: E731
            torch.testing.assert_close(as_matrix(restored[key]), as_matrix(values), atol=1e-5, rtol=0)
        else:
            np.testing.assert_allclose(restored[key], values, atol=1e-5, err_msg=key)


def modality_with_keys_of(config: DataConfig, extra_state: tuple[str, ...] = ()) -> ModalitySpec:
    from groot.data.synthetic import synthetic_modality

    short = lambda keys: [k.split(".", 1)[1] for k in keys]  # noqa: E731
    state = {k: 2 for k in [*short(config.state_keys), *extra_state]}
    return synthetic_modality(state, {k: 2 for k in short(config.action_keys)}, short(config.video_keys))


@pytest.mark.parametrize("name", ["libero_panda", "so100_dualcam", "unitree_g1"])
def test_data_config_is_inferred_from_the_modality_keys(name):
    assert infer_data_config(modality_with_keys_of(get_data_config(name))) == name
    # keys the config does not use do not stop it from fitting
    assert infer_data_config(modality_with_keys_of(get_data_config(name), extra_state=("x",))) == name


def test_no_fitting_data_config_names_the_dataset_keys():
    from groot.data.synthetic import synthetic_modality

    with pytest.raises(ConfigError, match=r"meta/modality.json: --data-config not given.*state.arm"):
        infer_data_config(synthetic_modality({"arm": 6}, {"arm": 6}, ["front"]))


def test_sample_transform_is_its_pixel_stage_then_its_host_chain():
    config = dataclasses.replace(get_data_config("libero_panda"), image_size=28)
    metadata, step = fake_metadata(config, np.random.default_rng(1))
    transform = config.transform()
    transform.set_metadata(metadata)
    transform.eval()  # centred crop: deterministic
    def fresh():
        return {key: value.copy() if isinstance(value, np.ndarray) else value for key, value in step.items()}

    whole = transform.apply(fresh())
    split = transform.host.apply(transform.pixels.apply(fresh()))
    assert whole.keys() == split.keys()
    for key in whole:
        np.testing.assert_array_equal(np.asarray(whole[key]), np.asarray(split[key]), err_msg=key)
    # the host chain leaves frames as they come (the engine crops and resizes them on the device)
    raw = transform.host.apply(fresh())
    assert raw["images"].shape[1:3] == (30, 40) and whole["images"].shape[1:3] == (28, 28)
