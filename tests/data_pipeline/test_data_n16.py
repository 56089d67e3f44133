"""GR00T N1.6 inputs: native-aspect image geometry, state-relative actions and their per-step statistics,
horizon padding, outlier clipping, the N1.6 embodiment table, and the data config fitted to an N1.6 model."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from groot.data import image_ops
from groot.data.configs import DataConfig, get_data_config
from groot.data.dataset import GrootDataset
from groot.data.embodiment import embodiment_index
from groot.data.lerobot import LeRobotDataset
from groot.data.metadata import STAT_NAMES, DatasetMetadata, merge_metadata
from groot.data.relative import CACHE_FILE
from groot.data.synthetic import make_synthetic_dataset
from groot.data.transforms import GR00TPack, StateActionTransform
from groot.errors import ConfigError, DatasetError, ObservationError
from groot.model.config import preset_config
from groot.train.data import fit_data_config_to_model

LANGUAGE = "annotation.human.action.task_description"
TOKEN_PIXELS = 28 * 28


# ---- image geometry ----------------------------------------------------------------------------
@pytest.mark.parametrize(("hw", "first", "out", "tokens"), [
    ((256, 256), (256, 256), (252, 252), 81),
    ((480, 640), (256, 341), (252, 336), 108),
])
def test_golden_native_shapes(hw, first, out, tokens):
    assert image_ops.shortest_edge_size(*hw, 256) == first
    assert image_ops.native_size(*hw, 256, 0.95, 28) == out
    frames = torch.randint(0, 256, (2, 3, *hw, 3), dtype=torch.uint8)
    for random in (False, True):
        result = image_ops.native_crop_resize(frames, 256, 0.95, 28, random=random)
        assert result.shape == (2, 3, *out, 3) and result.dtype == torch.uint8
    assert out[0] * out[1] // TOKEN_PIXELS == tokens


def test_intermediate_sizes_follow_albumentations_rounding():
    crop = image_ops.crop_size(256, 341, 0.95)
    assert crop == (243, 323)
    assert image_ops.shortest_edge_size(*crop, 256) == (256, 340)  # round(323 * 256 / 243) = 340
    assert image_ops.smart_resize_size(256, 340, 28) == (252, 336)
    assert image_ops.smart_resize_size(10, 10, 28) == (56, 56)  # area below 4 tokens is scaled up


def test_fractional_centre_crop_uses_floor_offsets():
    image = torch.arange(7 * 9).reshape(1, 7, 9)
    cropped = image_ops.fractional_crop(image, 0.5)  # keep 3 x 4, offsets ((7-3)//2, (9-4)//2) = (2, 2)
    torch.testing.assert_close(cropped, image[:, 2:5, 2:6])


def test_native_resize_keeps_content():
    flat = torch.full((1, 480, 640, 3), 77, dtype=torch.uint8)
    assert (image_ops.native_crop_resize(flat, 256, 0.95, 28) == 77).all()
    # a horizontal ramp stays a ramp of the same range: left darker than right, monotone across columns
    ramp = torch.linspace(0, 255, 640).round().to(torch.uint8).view(1, 1, 640, 1).expand(1, 480, 640, 3)
    out = image_ops.native_crop_resize(ramp.contiguous(), 256, 0.95, 28)[0, 100, :, 0].float()
    assert (out.diff() >= -1).all() and out[0] < 20 and out[-1] > 235


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_native_resize_on_gpu_matches_cpu():
    frames = torch.randint(0, 256, (2, 480, 640, 3), dtype=torch.uint8)
    cpu = image_ops.native_crop_resize(frames, 256, 0.95, 28)
    gpu = image_ops.native_crop_resize(frames.cuda(), 256, 0.95, 28).cpu()
    assert (cpu.int() - gpu.int()).abs().max() <= 1


def n16_config(**kwargs) -> DataConfig:
    values = dict(state_normalization={"state.arm": "min_max", "state.gripper": "min_max"},
                  action_normalization={"action.arm": "min_max", "action.gripper": "min_max"},
                  image_resize="shortest_edge", image_size=256, image_multiple=28, max_action_horizon=50,
                  max_action_dim=128, max_state_dim=128, clip_outliers=True, embodiment_table="n1.6",
                  action_indices=list(range(4)))
    return DataConfig("n16", ["video.front", "video.wrist"], ["state.arm", "state.gripper"],
                      ["action.arm", "action.gripper"], [LANGUAGE], **{**values, **kwargs})


def synthetic_metadata(config: DataConfig, relative: dict | None = None,
                       video: tuple[int, int] = (480, 640)) -> DatasetMetadata:
    rng = np.random.default_rng(0)
    stats, modalities = {"state": {}, "action": {}}, {"state": {}, "action": {}, "video": {}}
    for group, dims in (("state", {"arm": 6, "gripper": 1}), ("action", {"arm": 6, "gripper": 1})):
        for name, dim in dims.items():
            values = rng.normal(size=(50, dim))
            stats[group][name] = {"mean": values.mean(0).tolist(), "std": values.std(0).tolist(),
                                  "min": values.min(0).tolist(), "max": values.max(0).tolist(),
                                  "q01": np.quantile(values, 0.01, 0).tolist(),
                                  "q99": np.quantile(values, 0.99, 0).tolist()}
            modalities[group][name] = {"absolute": True, "rotation_type": None, "shape": [dim],
                                       "continuous": True}
    for view in ("front", "wrist"):
        modalities["video"][view] = {"resolution": [video[1], video[0]], "channels": 3, "fps": 10.0}
    if relative is not None:
        stats["relative_action"] = relative
    return DatasetMetadata(stats, modalities, "new_embodiment")


def raw_step(rng, video=(480, 640), horizon=4, batch=()):
    return {"video.front": rng.integers(0, 256, (1, *video, 3), dtype=np.uint8),
            "video.wrist": rng.integers(0, 256, (1, *video, 3), dtype=np.uint8),
            "state.arm": rng.normal(size=(*batch, 1, 6)).astype(np.float32),
            "state.gripper": rng.normal(size=(*batch, 1, 1)).astype(np.float32),
            "action.arm": rng.normal(size=(*batch, horizon, 6)).astype(np.float32),
            "action.gripper": rng.normal(size=(*batch, horizon, 1)).astype(np.float32),
            LANGUAGE: ["pick"]}


def test_n16_sample_images_keep_aspect_and_actions_pad_to_the_horizon():
    config = n16_config()
    transform = config.transform()
    transform.set_metadata(synthetic_metadata(config))
    sample = transform.eval().apply(raw_step(np.random.default_rng(1)))
    assert sample["images"].shape == (2, 252, 336, 3)
    assert sample["action"].shape == (50, 128) and sample["action_mask"].shape == (50, 128)
    assert sample["action_mask"][:4, :7].all() and sample["action_mask"].sum() == 4 * 7
    assert (sample["action"][4:] == 0).all() and (sample["action"][:, 7:] == 0).all()
    assert sample["state"].shape == (1, 128) and sample["embodiment_id"] == 10
    assert np.abs(sample["action"]).max() <= 1 and np.abs(sample["state"]).max() <= 1  # clip_outliers
    # training: random crop and colour jitter, same geometry
    assert transform.train().apply(raw_step(np.random.default_rng(2)))["images"].shape == (2, 252, 336, 3)


def test_views_that_resize_differently_are_refused():
    config = n16_config()
    transform = config.transform()
    step = raw_step(np.random.default_rng(1))
    step["video.wrist"] = np.zeros((1, 256, 256, 3), np.uint8)
    with pytest.raises(DatasetError, match="one size"):
        transform.pixels.apply(step)


def test_horizon_padding_and_unapply_crop():
    pack = GR00TPack([LANGUAGE], max_state_dim=8, max_action_dim=10, action_horizon=3, max_action_horizon=5)
    pack.set_metadata(synthetic_metadata(n16_config()))
    action = np.arange(12, dtype=np.float32).reshape(3, 4)
    sample = pack.apply({"state": np.ones((1, 2), np.float32), "action": action})
    expected_mask = np.zeros((5, 10), bool)
    expected_mask[:3, :4] = True
    np.testing.assert_array_equal(sample["action_mask"], expected_mask)
    np.testing.assert_array_equal(sample["action"][:3, :4], action)
    assert sample["embodiment_id"] == 31  # the default table is N1.5's
    predicted = np.random.default_rng(0).normal(size=(2, 5, 10))
    np.testing.assert_array_equal(pack.unapply({"action": predicted})["action"], predicted[:, :3])
    with pytest.raises(ValueError, match="max_action_horizon"):
        pack.apply({"action": np.ones((6, 2))})


def test_n15_chain_has_no_padding_rows():
    config = get_data_config("libero_panda")
    assert config.max_action_horizon is None and config.image_resize == "square"
    pack = config.transform().host.transforms[-1]
    assert pack.max_action_horizon is None and pack.action_horizon == 16 and pack.embodiment_table == "n1.5"


# ---- relative actions ----------------------------------------------------------------------------
def relative_stats(steps: int, dims: dict[str, int], spread: float = 2.0) -> dict:
    rng = np.random.default_rng(3)
    out = {}
    for name, dim in dims.items():
        low = -spread * (1 + np.arange(steps))[:, None] * rng.uniform(0.5, 1.0, (steps, dim))
        high = -low
        out[name] = {"mean": np.zeros((steps, dim)).tolist(), "std": high.tolist(), "min": low.tolist(),
                     "max": high.tolist(), "q01": low.tolist(), "q99": high.tolist()}
    return out


def test_relative_round_trip_single_and_batched():
    config = n16_config(relative_action_keys=["action.arm"], clip_outliers=False)
    transform = config.transform().eval()
    metadata = synthetic_metadata(config, relative_stats(4, {"arm": 6}))
    transform.set_metadata(metadata)
    step = raw_step(np.random.default_rng(5))
    raw = {key: step[key].copy() for key in ("action.arm", "action.gripper", "state.arm")}
    sample = transform.apply(step)
    # forward: arm is (action - last state) min-max normalized with the [T, D] relative stats
    stats = metadata.key_stats("relative_action", "arm")
    delta = raw["action.arm"] - raw["state.arm"][-1]
    np.testing.assert_allclose(sample["action"][:4, :6],
                               2 * (delta - stats["min"]) / (stats["max"] - stats["min"]) - 1,
                               rtol=1e-5, atol=1e-5)
    back = transform.unapply({"action": sample["action"][None],
                              "reference_state": {"state.arm": raw["state.arm"][-1][None]}})
    np.testing.assert_allclose(back["action.arm"][0], raw["action.arm"], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(back["action.gripper"][0], raw["action.gripper"], rtol=1e-5, atol=1e-5)
    assert back["action.arm"].shape == (1, 4, 6)  # the 50 padded rows are cut to the config's horizon


def test_relative_unapply_requires_a_matching_reference():
    config = n16_config(relative_action_keys=["action.arm"])
    transform = config.transform()
    transform.set_metadata(synthetic_metadata(config, relative_stats(4, {"arm": 6})))
    action = np.zeros((2, 50, 128), np.float32)
    with pytest.raises(ObservationError, match="state.arm"):
        transform.unapply({"action": action.copy()})
    with pytest.raises(ObservationError, match=r"\[2, 6\]"):
        transform.unapply({"action": action.copy(), "reference_state": {"state.arm": np.zeros((2, 5))}})
    step = raw_step(np.random.default_rng(0))
    step["state.arm"] = np.zeros((1, 5), np.float32)
    with pytest.raises(DatasetError, match="state.arm"):
        transform.host.transforms[0].apply(step)


def test_relative_key_without_its_statistics_is_refused():
    config = n16_config(relative_action_keys=["action.arm"])
    transform = config.transform()
    with pytest.raises(DatasetError, match="relative_action.arm"):
        transform.set_metadata(synthetic_metadata(config))


def test_clip_outliers_on_decode():
    metadata = synthetic_metadata(n16_config())
    lo, hi = (np.asarray(metadata.statistics["action"]["arm"][s]) for s in ("min", "max"))
    for clip in (False, True):
        t = StateActionTransform(["action.arm"], {"action.arm": "min_max"}, clip_outliers=clip)
        t.set_metadata(metadata)
        beyond = np.full((2, 6), 3.0, np.float32)
        outside = np.stack([hi + 10 * (hi - lo), lo]).astype(np.float32)
        encoded = t.apply({"action.arm": outside})["action.arm"]
        decoded = t.unapply({"action.arm": beyond})["action.arm"]
        if clip:
            np.testing.assert_allclose(encoded, [np.ones(6), -np.ones(6)], atol=1e-6)
            np.testing.assert_allclose(decoded, np.stack([hi, hi]), rtol=1e-5)
        else:
            assert encoded.max() > 2 and decoded.max() > hi.max()


# ---- relative statistics from a dataset ---------------------------------------------------------
@pytest.fixture(scope="module")
def dataset_path(tmp_path_factory):
    return make_synthetic_dataset(tmp_path_factory.mktemp("relative") / "ds", num_episodes=3,
                                  episode_length=7, cameras=("front",), image_size=16)


def direct_relative_stats(path, name: str, dims: slice, indices: list[int]) -> dict[str, np.ndarray]:
    reader = LeRobotDataset(path)
    windows = []
    for episode in reader.episodes:
        data = reader.episode_data(episode.index)
        action, state = data["action"][:, dims], data["observation.state"][:, dims]
        length = len(action)
        for t in range(length):
            windows.append([action[min(t + k, length - 1)] - state[t] for k in indices])
    w = np.asarray(windows, np.float64)  # [N, T, D]
    return {"mean": w.mean(0), "std": w.std(0), "min": w.min(0), "max": w.max(0),
            "q01": np.quantile(w, 0.01, axis=0), "q99": np.quantile(w, 0.99, axis=0)}


def test_relative_stats_match_numpy_and_are_cached(dataset_path):
    indices = [0, 1, 2, 3, 4]  # windows near an episode's end clamp to its last frame
    config = dataclasses.replace(n16_config(relative_action_keys=["action.arm"]), video_keys=["video.front"],
                                 action_indices=indices)
    dataset = GrootDataset(dataset_path, config, "new_embodiment", transform=False)
    expected = direct_relative_stats(dataset_path, "arm", slice(0, 6), indices)
    got = dataset.metadata.key_stats("relative_action", "arm")
    for stat in STAT_NAMES:
        assert got[stat].shape == (5, 6)
        np.testing.assert_allclose(got[stat], expected[stat], rtol=1e-5, atol=1e-6)
    assert not np.allclose(got["std"][0], got["std"][-1])  # a per-step statistic, not one broadcast row
    cache = dataset_path / "meta" / CACHE_FILE
    entries = json.loads(cache.read_text())
    assert len(entries) == 1 and "action.arm" in next(iter(entries))
    # a cached entry is read back (marked here to prove it is not recomputed)
    key = next(iter(entries))
    entries[key]["mean"][0][0] = 123.0
    cache.write_text(json.dumps(entries))
    reread = GrootDataset(dataset_path, config, "new_embodiment", transform=False)
    assert reread.metadata.statistics["relative_action"]["arm"]["mean"][0][0] == 123.0
    # other indices are another entry; a broken file is recomputed
    cache.write_text("{not json")
    again = GrootDataset(dataset_path, config, "new_embodiment", transform=False)
    np.testing.assert_allclose(again.metadata.key_stats("relative_action", "arm")["mean"], expected["mean"],
                               rtol=1e-5, atol=1e-6)
    sample = GrootDataset(dataset_path, config, "new_embodiment")[3]
    assert sample["action"].shape == (50, 128) and sample["embodiment_id"] == 10


def test_metadata_with_relative_stats_round_trips_and_merges():
    stats = relative_stats(4, {"arm": 6})
    metadata = synthetic_metadata(n16_config(), stats)
    again = DatasetMetadata.from_dict(json.loads(json.dumps(metadata.to_dict())))
    assert again.statistics["relative_action"] == stats
    merged = merge_metadata([metadata, again], [1.0, 3.0])
    np.testing.assert_allclose(merged.statistics["relative_action"]["arm"]["max"], stats["arm"]["max"])
    broken = metadata.to_dict()
    arm = broken["statistics"]["relative_action"]["arm"]
    arm["q99"] = arm["q99"][:3]
    with pytest.raises(DatasetError, match="relative_action.arm.q99"):
        DatasetMetadata.from_dict(broken)
    broken["statistics"]["relative_action"] = {"elbow": stats["arm"]}
    with pytest.raises(DatasetError, match="relative_action.elbow"):
        DatasetMetadata.from_dict(broken)


# ---- config, embodiments, fitting ---------------------------------------------------------------
def test_data_config_new_fields_serialise_and_old_files_load():
    config = n16_config(relative_action_keys=["action.arm"])
    assert DataConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    old = get_data_config("libero_panda").to_dict()
    for field in ("image_resize", "image_multiple", "max_action_horizon", "relative_action_keys",
                  "clip_outliers", "embodiment_table"):
        old.pop(field)
    loaded = DataConfig.from_dict(old)
    assert loaded == get_data_config("libero_panda")
    assert (loaded.image_resize, loaded.image_multiple, loaded.max_action_horizon,
            loaded.relative_action_keys, loaded.clip_outliers, loaded.embodiment_table) == (
        "square", 1, None, [], False, "n1.5")


@pytest.mark.parametrize(("change", "field"), [
    ({"image_resize": "letterbox"}, "image_resize"),
    ({"image_multiple": 0}, "image_multiple"),
    ({"max_action_horizon": 3}, "max_action_horizon"),
    ({"embodiment_table": "n2"}, "embodiment_table"),
    ({"relative_action_keys": ["action.elbow"]}, "relative_action_keys"),
])
def test_data_config_refuses_bad_n16_fields(change, field):
    with pytest.raises(DatasetError, match=field):
        n16_config(**change)


def test_relative_key_needs_its_state_key():
    with pytest.raises(DatasetError, match="state.gripper"):
        DataConfig("n16", [], ["state.arm"], ["action.arm", "action.gripper"], [LANGUAGE],
                   relative_action_keys=["action.gripper"])


def test_embodiment_tables():
    n16 = {"oxe_google": 0, "oxe_widowx": 1, "libero_panda": 2, "unitree_g1": 8, "new_embodiment": 10,
           "robocasa_panda_omron": 13, "oxe_droid": 16, "gr1": 20, "behavior_r1_pro": 24}
    assert {tag: embodiment_index(tag, "n1.6") for tag in n16} == n16
    assert embodiment_index("new_embodiment") == 31 and embodiment_index("gr1", "n1.5") == 24
    with pytest.raises(ConfigError, match="libero_panda"):
        embodiment_index("libero_panda")  # not an N1.5 tag
    with pytest.raises(ConfigError, match="n2"):
        embodiment_index("gr1", "n2")


@pytest.mark.parametrize(("preset", "edge", "dims", "horizon"), [
    ("n1.6-3b", 256, 128, 50), ("n1.6-small", 112, 128, 50), ("n1.6-tiny", 56, 32, 16)])
def test_fit_data_config_to_n16_models(preset, edge, dims, horizon):
    model = preset_config(preset)
    fitted = fit_data_config_to_model(get_data_config("libero_panda"), model)
    assert (fitted.image_resize, fitted.image_size, fitted.crop_scale, fitted.image_multiple) == (
        "shortest_edge", edge, 0.95, 28)
    assert (fitted.max_state_dim, fitted.max_action_dim, fitted.max_action_horizon) == (dims, dims, horizon)
    assert fitted.clip_outliers and fitted.embodiment_table == "n1.6"
    assert get_data_config("libero_panda").image_resize == "square"  # the original is untouched


def test_n16_model_config_keeps_its_image_geometry():
    from groot.model.config import GR00TN16Config

    tiny = preset_config("n1.6-tiny")
    again = GR00TN16Config.from_dict(json.loads(json.dumps(tiny.to_dict())))
    assert (again.shortest_image_edge, again.crop_fraction) == (56, 0.95)
