from __future__ import annotations

import colorsys

import numpy as np
import pytest
import torch

from groot.data import image_ops
from groot.data.configs import DataConfig
from groot.data.metadata import STAT_NAMES, DatasetMetadata
from groot.data.rotation import convert_rotation
from groot.data.transforms import (
    ColorJitter,
    GR00TPack,
    StateActionSinCos,
    StateActionTransform,
    VideoTransform,
    adjust_hue,
    color_jitter,
)
from groot.errors import DatasetError


def column_stats(values: np.ndarray) -> dict[str, list[float]]:
    q01, q99 = np.quantile(values, [0.01, 0.99], axis=0)
    stats = {"mean": values.mean(0), "std": values.std(0), "min": values.min(0), "max": values.max(0),
             "q01": q01, "q99": q99}
    return {name: stats[name].tolist() for name in STAT_NAMES}


def make_metadata(arrays: dict[str, np.ndarray], rotation_types: dict[str, str] | None = None,
                  relative: tuple[str, ...] = (), video: dict[str, tuple[int, int]] | None = None,
                  tag: str = "new_embodiment") -> DatasetMetadata:
    """arrays: {"state.x" | "action.x": [N, D]}; video: {name: (H, W)}."""
    rotation_types = rotation_types or {}
    statistics: dict = {"state": {}, "action": {}}
    modalities: dict = {"state": {}, "action": {},
                        "video": {k: {"resolution": [w, h], "channels": 3, "fps": 10.0}
                                  for k, (h, w) in (video or {}).items()}}
    for key, values in arrays.items():
        group, name = key.split(".", 1)
        statistics[group][name] = column_stats(values)
        modalities[group][name] = {"absolute": key not in relative, "rotation_type": rotation_types.get(key),
                                   "shape": [values.shape[1]], "continuous": True}
    return DatasetMetadata(statistics, modalities, tag)


def normalized(key: str, values: np.ndarray, mode: str, metadata: DatasetMetadata | None = None):
    metadata = metadata or make_metadata({key: values})
    t = StateActionTransform([key], {key: mode})
    t.set_metadata(metadata)
    return t, t.apply({key: values.copy()})[key]


RNG = np.random.default_rng(0)
DATA = RNG.normal(2.0, 3.0, size=(200, 4)).astype(np.float32)


def test_min_max_forward_and_inverse():
    t, y = normalized("action.a", DATA, "min_max")
    lo, hi = DATA.min(0), DATA.max(0)
    np.testing.assert_allclose(y, 2 * (DATA - lo) / (hi - lo) - 1, atol=1e-5)
    assert y.min() == pytest.approx(-1, abs=1e-5) and y.max() == pytest.approx(1, abs=1e-5)
    np.testing.assert_allclose(t.unapply({"action.a": y})["action.a"], DATA, atol=1e-4)


def test_q99_forward_clamps_and_inverts_inside_range():
    t, y = normalized("action.a", DATA, "q99")
    q01, q99 = np.quantile(DATA, [0.01, 0.99], axis=0)
    expected = np.clip(2 * (DATA - q01) / (q99 - q01) - 1, -1, 1)
    np.testing.assert_allclose(y, expected, atol=1e-5)
    assert (y == 1).any() and (y == -1).any()  # outliers were clamped
    inside = (y > -1) & (y < 1)
    np.testing.assert_allclose(t.unapply({"action.a": y})["action.a"][inside], DATA[inside], atol=1e-4)


def test_mean_std_forward_and_inverse():
    t, y = normalized("state.s", DATA, "mean_std")
    np.testing.assert_allclose(y, (DATA - DATA.mean(0)) / DATA.std(0), atol=1e-5)
    np.testing.assert_allclose(t.unapply({"state.s": y})["state.s"], DATA, atol=1e-4)


def test_binary_forward_and_inverse():
    values = np.array([[0.0], [0.4], [0.5], [0.6], [1.0], [-1.0]], np.float32)
    t, y = normalized("action.g", values, "binary")
    np.testing.assert_array_equal(y[:, 0], [0, 0, 0, 1, 1, 0])
    np.testing.assert_array_equal(t.unapply({"action.g": np.array([[0.2], [0.9]])})["action.g"][:, 0], [0, 1])


def test_scale_forward_and_not_invertible():
    values = np.array([[-4.0, 0.0, 1.0], [2.0, 0.0, 3.0]], np.float32)
    t, y = normalized("action.a", values, "scale")
    np.testing.assert_allclose(y, [[-1.0, 0.0, 1 / 3], [0.5, 0.0, 1.0]], atol=1e-6)
    with pytest.raises(ValueError, match="scale"):
        t.unapply({"action.a": y})


def test_degenerate_stats():
    values = np.stack([np.full(50, 3.0), np.linspace(-1, 1, 50)], 1).astype(np.float32)  # dim 0 constant
    t, y = normalized("action.a", values, "min_max")
    np.testing.assert_array_equal(y[:, 0], 0.0)
    np.testing.assert_allclose(t.unapply({"action.a": y})["action.a"][:, 0], 3.0)
    t, y = normalized("action.a", values, "q99")
    np.testing.assert_array_equal(y[:, 0], 1.0)  # x unchanged (3.0), then clamped to [-1, 1]
    t, y = normalized("action.a", values, "mean_std")
    np.testing.assert_array_equal(y[:, 0], 3.0)  # x unchanged
    np.testing.assert_allclose(t.unapply({"action.a": y})["action.a"][:, 0], 3.0)
    _, y = normalized("action.a", np.zeros((4, 2), np.float32), "scale")
    np.testing.assert_array_equal(y, 0.0)


def test_absolute_rotation_target_uses_fixed_bounds_and_inverts():
    q = torch.nn.functional.normalize(torch.randn(30, 4, dtype=torch.float64), dim=-1)
    quat = torch.where(q[:, :1] < 0, -q, q).float().numpy()
    metadata = make_metadata({"state.q": quat}, {"state.q": "quaternion"})
    t = StateActionTransform(["state.q"], {"state.q": "min_max"}, {"state.q": "axis_angle"})
    t.set_metadata(metadata)
    y = t.apply({"state.q": quat.copy()})["state.q"]
    axis_angle = convert_rotation(torch.from_numpy(quat), "quaternion", "axis_angle").numpy()
    np.testing.assert_allclose(y, axis_angle / np.pi, atol=1e-5)  # min_max with bounds +-pi
    np.testing.assert_allclose(t.unapply({"state.q": y})["state.q"], quat, atol=1e-5)


def test_converted_relative_rotation_cannot_be_normalized():
    aa = RNG.normal(size=(10, 3)).astype(np.float32)
    metadata = make_metadata({"action.r": aa}, {"action.r": "axis_angle"}, relative=("action.r",))
    t = StateActionTransform(["action.r"], {"action.r": "min_max"}, {"action.r": "rotation_6d"})
    with pytest.raises(ValueError, match="relative"):
        t.set_metadata(metadata)
    t = StateActionTransform(["action.r"], {}, {"action.r": "rotation_6d"})
    t.set_metadata(metadata)
    six = t.apply({"action.r": aa.copy()})["action.r"]
    assert six.shape == (10, 6)
    np.testing.assert_allclose(
        convert_rotation(torch.from_numpy(t.unapply({"action.r": six})["action.r"]), "axis_angle", "matrix"),
        convert_rotation(torch.from_numpy(aa), "axis_angle", "matrix"), atol=1e-5)


def test_unapply_casts_to_recorded_dtype():
    values = RNG.integers(0, 2, size=(8, 1)).astype(np.int64)
    t, y = normalized("action.g", values, "binary")
    out = t.unapply({"action.g": y})["action.g"]
    assert out.dtype == np.int64
    np.testing.assert_array_equal(out, values)


def test_sincos_doubles_state():
    x = RNG.normal(size=(1, 5)).astype(np.float32)
    out = StateActionSinCos(["state.a"]).apply({"state.a": x})["state.a"]
    np.testing.assert_allclose(out, np.concatenate([np.sin(x), np.cos(x)], -1))


# ---- full chain --------------------------------------------------------------------------------
STATE = {"state.pos": RNG.normal(size=(100, 3)).astype(np.float32),
         "state.grip": RNG.uniform(0, 0.04, size=(100, 2)).astype(np.float32)}
ACTION = {"action.delta": RNG.normal(size=(100, 3)).astype(np.float32),
          "action.rot": RNG.normal(0, 0.5, size=(100, 3)).astype(np.float32),
          "action.scaled": RNG.normal(size=(100, 2)).astype(np.float32),
          "action.gripper": RNG.choice([0.0, 1.0], size=(100, 1)).astype(np.float32)}
CONFIG = DataConfig(
    "test", ["video.cam_a", "video.cam_b"], list(STATE), list(ACTION), ["annotation.human.task"],
    action_indices=list(range(16)),
    state_normalization={"state.pos": "mean_std", "state.grip": "min_max"},
    action_normalization={"action.delta": "min_max", "action.scaled": "mean_std", "action.gripper": "binary"},
    action_target_rotations={"action.rot": "rotation_6d"}, image_size=32)
METADATA = make_metadata({**STATE, **ACTION}, {"action.rot": "axis_angle"}, relative=("action.rot",),
                         video={"cam_a": (40, 48), "cam_b": (40, 48)})


def make_step(t_video: int = 1) -> dict:
    frames = np.zeros((t_video, 2, 40, 48, 3), np.uint8)
    for t in range(t_video):
        frames[t, 0] = 10 + 100 * t  # (t, view) coded in the colour
        frames[t, 1] = 60 + 100 * t
    return {"video.cam_a": frames[:, 0], "video.cam_b": frames[:, 1],
            **{k: v[:1].copy() for k, v in STATE.items()}, **{k: v[10:26].copy() for k, v in ACTION.items()},
            "annotation.human.task": ["pick the cube"]}


def test_chain_emits_model_sample():
    transform = CONFIG.transform()
    transform.set_metadata(METADATA)
    sample = transform.eval().apply(make_step())
    assert set(sample) == {"images", "language", "state", "state_mask", "action", "action_mask",
                           "embodiment_id"}
    assert sample["images"].shape == (2, 32, 32, 3) and sample["images"].dtype == np.uint8
    assert sample["language"] == "pick the cube"
    assert sample["state"].shape == (1, 64) and sample["state"].dtype == np.float32
    np.testing.assert_array_equal(sample["state_mask"][0], np.arange(64) < 5)
    assert sample["action"].shape == (16, 32) and sample["action"].dtype == np.float32
    np.testing.assert_array_equal(sample["action_mask"][0], np.arange(32) < 3 + 6 + 2 + 1)
    assert not sample["action"][:, 12:].any()
    assert sample["embodiment_id"] == 31


def test_images_in_time_then_view_order():
    transform = CONFIG.transform()
    transform.set_metadata(METADATA)
    step = make_step(t_video=2)
    images = transform.eval().apply(step)["images"]
    # uint8 truncation after the float round trip may lose one level, as in the original
    np.testing.assert_allclose(images[:, 16, 16, 0], [10, 60, 110, 160], atol=1)


def test_action_apply_unapply_returns_original_arrays():
    transform = CONFIG.transform()
    transform.set_metadata(METADATA)
    step = make_step()
    original = {k: v.copy() for k, v in step.items() if k.startswith("action.")}
    sample = transform.train().apply(step)
    out = transform.unapply({"action": sample["action"]})
    assert set(out) == set(original)
    for key, values in original.items():
        if key == "action.rot":  # axis-angle is unique up to the representation: compare matrices
            as_matrix = lambda x: convert_rotation(torch.from_numpy(x), "axis_angle", "matrix")  # noqa: E731
            torch.testing.assert_close(as_matrix(out[key]), as_matrix(values), atol=1e-5, rtol=0)
        else:
            np.testing.assert_allclose(out[key], values, atol=1e-5, err_msg=key)
    batched = transform.unapply({"action": np.stack([sample["action"]] * 3)})
    assert batched["action.delta"].shape == (3, 16, 3)
    np.testing.assert_allclose(batched["action.delta"][2], original["action.delta"], atol=1e-5)


def test_state_padding_truncation_and_action_limit():
    pack = GR00TPack(["annotation.x"], max_state_dim=4, max_action_dim=3)
    pack.set_metadata(METADATA)
    sample = pack.apply({"state": np.arange(6, dtype=np.float32)[None], "action": np.ones((16, 2))})
    np.testing.assert_array_equal(sample["state"], [[0, 1, 2, 3]])
    assert sample["state_mask"].all()
    np.testing.assert_array_equal(sample["action_mask"][0], [True, True, False])
    assert sample["language"] == "Perform the default behavior."
    with pytest.raises(ValueError, match="max_action_dim"):
        pack.apply({"action": np.ones((16, 4))})


@pytest.mark.parametrize("entry", [["Open the drawer!"], np.array(["Open the drawer!"]),
                                   np.array([["Open the drawer!"]]), np.str_("Open the drawer!")])
def test_language_is_the_plain_string_verbatim(entry):
    """The original trains on the plain string (NVIDIA/Isaac-GR00T @ 5e3ef5ef: LeRobotSingleDataset
    .get_language gives a list of one string, GR00TTransform._prepare_language takes element 0) and
    never applies formalize_language in N1.5: case and punctuation stay."""
    pack = GR00TPack(["annotation.x"])
    pack.set_metadata(METADATA)
    language = pack.apply({"annotation.x": entry})["language"]
    assert type(language) is str and language == "Open the drawer!"


# ---- video ------------------------------------------------------------------------------------
def test_video_eval_is_centre_crop_resize():
    frames = RNG.integers(0, 255, size=(2, 40, 48, 3), dtype=np.uint8)
    video = VideoTransform(["video.cam_a"], crop_scale=0.9, image_size=24).eval()
    video.set_metadata(METADATA)
    out = video.apply({"video.cam_a": frames})["video.cam_a"]
    expected = image_ops.crop_resize(torch.from_numpy(frames), 0.9, 24).numpy()
    np.testing.assert_array_equal(out, expected)


def test_video_train_crop_is_one_of_the_valid_offsets():
    frames = RNG.integers(0, 255, size=(1, 10, 10, 3), dtype=np.uint8)
    video = VideoTransform(["video.v"], crop_scale=0.8, image_size=8, color_jitter=None).train()
    out = video.apply({"video.v": frames.copy()})["video.v"]
    candidates = [frames[:, i:i + 8, j:j + 8] for i in range(3) for j in range(3)]
    assert any(np.array_equal(out, c) for c in candidates)


def test_video_resolution_must_match_metadata():
    video = VideoTransform(["video.cam_a"])
    video.set_metadata(METADATA)
    with pytest.raises(DatasetError, match="resolution"):
        video.apply({"video.cam_a": np.zeros((1, 30, 30, 3), np.uint8)})


@pytest.mark.parametrize("shift", [0.0, 0.08, -0.3, 0.5])
def test_hue_shift_matches_colorsys(shift):
    x = torch.rand(3, 6, 7)
    x[:, 0, 0] = 0.4  # grey pixel: no hue
    x[:, 0, 1] = torch.tensor([0.9, 0.9, 0.1])  # ties between channels
    expected = torch.tensor([
        colorsys.hsv_to_rgb((h + shift) % 1, s, v)
        for h, s, v in (colorsys.rgb_to_hsv(*p) for p in x.reshape(3, -1).T.tolist())]).T.reshape(3, 6, 7)
    torch.testing.assert_close(adjust_hue(x, torch.tensor(shift)), expected, atol=1e-5, rtol=0)


def test_jitter_ranges():
    x = torch.rand(2, 3, 3, 5, 7)
    gray = color_jitter(x, ColorJitter(brightness=0, contrast=0, saturation=0, hue=0))
    torch.testing.assert_close(gray, x)
    torch.manual_seed(0)
    bright = color_jitter(x * 0.5, ColorJitter(brightness=0.3, contrast=0, saturation=0, hue=0))
    ratio = bright / (x * 0.5)
    assert ((ratio > 0.7 - 1e-5) & (ratio < 1.3 + 1e-5)).all()
    per_view = ratio.flatten(2).std(-1)  # one factor per view, shared by all time steps and pixels
    assert per_view.max() < 1e-4
