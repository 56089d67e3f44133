from __future__ import annotations

import numpy as np
import pytest

from groot.sim import libero


def _quat_xyzw(axis, angle):
    axis = np.asarray(axis, dtype=np.float64) / np.linalg.norm(axis)
    return np.concatenate([axis * np.sin(angle / 2), [np.cos(angle / 2)]])


@pytest.mark.parametrize("axis,angle", [([0, 0, 1], 0.3), ([1, 2, -1], 2.5), ([0, 1, 0], 1e-5)])
def test_quat_to_axis_angle_recovers_rotation(axis, angle):
    expected = np.asarray(axis) / np.linalg.norm(axis) * angle
    np.testing.assert_allclose(libero.quat_xyzw_to_axis_angle(_quat_xyzw(axis, angle)), expected, atol=1e-9)
    # -q is the same rotation: the result takes the short way round
    np.testing.assert_allclose(libero.quat_xyzw_to_axis_angle(-_quat_xyzw(axis, angle)), expected, atol=1e-9)


def test_action_chunk_to_vector_thresholds_gripper():
    chunk = {"action.eef_delta_pos": np.arange(48, dtype=np.float32).reshape(16, 3),
             "action.eef_delta_rot": -np.ones((16, 3), np.float32),
             "action.gripper": np.linspace(-1, 1, 16, dtype=np.float32)[:, None]}
    first, last = libero.action_to_vector(chunk, 0), libero.action_to_vector(chunk, 15)
    np.testing.assert_array_equal(first[:6], [0, 1, 2, -1, -1, -1])
    assert first[6] == libero.OPEN and last[6] == libero.CLOSE
    np.testing.assert_array_equal(last[:3], [45, 46, 47])
    split = libero.vector_to_action(last)
    assert {k: v.shape for k, v in split.items()} == {"eef_delta_pos": (3,), "eef_delta_rot": (3,),
                                                      "gripper": (1,)}


def test_map_observation_flips_images_and_maps_keys():
    rng = np.random.default_rng(0)
    raw = {"agentview_image": rng.integers(0, 255, (8, 6, 3), dtype=np.uint8),
           "robot0_eye_in_hand_image": rng.integers(0, 255, (8, 6, 3), dtype=np.uint8),
           "robot0_eef_pos": np.array([0.1, 0.2, 0.3]),
           "robot0_eef_quat": _quat_xyzw([1, 0, 0], np.pi / 2),
           "robot0_gripper_qpos": np.array([0.04, -0.04])}
    obs = libero.map_observation(raw, "pick up the milk")
    assert obs["video.image"][0, 0].tolist() == raw["agentview_image"][-1, -1].tolist()
    np.testing.assert_array_equal(obs["video.wrist_image"], raw["robot0_eye_in_hand_image"][::-1, ::-1])
    np.testing.assert_allclose(obs["state.eef_axis_angle"], [np.pi / 2, 0, 0], atol=1e-6)
    assert obs["state.gripper_qpos"].dtype == np.float32 and obs["state.eef_pos"].shape == (3,)
    assert obs[libero.LANGUAGE_KEY] == "pick up the milk"
    policy_obs = libero.policy_observation(obs)
    assert policy_obs["video.image"].shape == (1, 8, 6, 3) and policy_obs["state.eef_pos"].shape == (1, 3)
    assert policy_obs[libero.LANGUAGE_KEY] == ["pick up the milk"]


@pytest.mark.sim
@pytest.mark.skipif(not libero.libero_available(), reason="LIBERO not installed (pip install 'groot[sim]')")
def test_env_observation_layout_and_upright_images():
    with libero.LiberoEnv("libero_object", 0, image_size=64, settle_steps=2) as env:
        obs = env.reset(0)
        assert env.language == "pick up the alphabet soup and place it in the basket"
        assert env.task.goal == [["in", "alphabet_soup_1", "basket_1_contain_region"]]
        for key in ("video.image", "video.wrist_image"):
            assert obs[key].shape == (64, 64, 3) and obs[key].dtype == np.uint8
            raw = env.raw_obs[f"{libero.CAMERAS[key.removeprefix('video.')]}_image"]
            np.testing.assert_array_equal(obs[key], raw[::-1, ::-1])
        # upright agent view: the bright table fills the bottom of the image, not the top
        assert obs["video.image"][-8:].mean() > obs["video.image"][:8].mean()
        np.testing.assert_allclose(obs["state.eef_pos"], env.raw_obs["robot0_eef_pos"], atol=1e-6)
        start = obs["state.eef_pos"].copy()
        for _ in range(5):
            obs, success, done = env.step(np.array([1.0, 0, 0, 0, 0, 0, libero.OPEN]))
        assert obs["state.eef_pos"][0] > start[0] + 0.01 and not success and not done
        with pytest.raises(ValueError, match="init states"):
            env.reset(10_000)


@pytest.mark.sim
@pytest.mark.skipif(not libero.libero_available(), reason="LIBERO not installed (pip install 'groot[sim]')")
def test_skipped_renders_leave_the_rendered_images_bit_identical():
    """Steps taken with render=False return no images, and the images of the steps that render (and of
    reset, which renders only its last settling step) equal those of rendering every step."""
    rng = np.random.default_rng(0)
    actions = rng.uniform(-0.5, 0.5, size=(24, 7))
    actions[:, 6] = np.sign(actions[:, 6])
    video = ("video.image", "video.wrist_image")
    with libero.LiberoEnv("libero_object", 1, image_size=48, seed=3) as every, \
            libero.LiberoEnv("libero_object", 1, image_size=48, seed=3) as skipping, \
            libero.LiberoEnv("libero_object", 1, image_size=48, seed=3, settle_steps=0) as settled_by_hand:
        first = skipping.reset(2)
        settled_by_hand.reset(2)
        for _ in range(libero.SETTLE_STEPS):
            by_hand, _, _ = settled_by_hand.step(libero.NOOP_ACTION)
        every.reset(2)
        for key in video:
            np.testing.assert_array_equal(first[key], by_hand[key], err_msg=key)
        rendered = 0
        for i, action in enumerate(actions):
            render = i % 8 == 7
            want, _, _ = every.step(action)
            got, _, _ = skipping.step(action, render=render)
            np.testing.assert_array_equal(got["state.eef_pos"], want["state.eef_pos"])
            if not render:
                assert not set(video) & set(got) and not set(video) & set(skipping.observation())
                continue
            rendered += 1
            for key in video:
                np.testing.assert_array_equal(got[key], want[key], err_msg=f"step {i} {key}")
            assert not np.array_equal(got["video.wrist_image"], first["video.wrist_image"])  # the arm moved
        assert rendered == 3
