from __future__ import annotations

import numpy as np
import pytest

from groot.data import writer
from groot.data.lerobot import LeRobotDataset
from groot.data.synthetic import TASKS, make_synthetic_episodes, synthetic_modality


def test_metadata_round_trip(dataset_root, layout):
    ds = LeRobotDataset(dataset_root)
    assert ds.version == dataset_root.name
    assert ds.fps == 10
    assert [e.index for e in ds.episodes] == list(range(layout.num_episodes))
    assert all(e.length == layout.length for e in ds.episodes)
    assert ds.tasks == dict(enumerate(TASKS))
    assert [e.tasks for e in ds.episodes] == [[TASKS[i % len(TASKS)]] for i in range(layout.num_episodes)]
    assert set(ds.modality.video) == set(layout.cameras)
    assert ds.video_resolution("wrist") == layout.size


def test_values_round_trip(dataset_root, layout, originals):
    ds = LeRobotDataset(dataset_root)
    for episode in ds.episodes:
        data = ds.episode_data(episode.index)
        original = originals[episode.index]
        for group, column in (("state", "observation.state"), ("action", "action")):
            for key, spec in ds.modality.arrays(group).items():
                np.testing.assert_array_equal(data[column][:, spec.start:spec.end],
                                              getattr(original, group)[key])
        assert data["observation.state"].dtype == np.float32
        np.testing.assert_allclose(data["timestamp"], np.arange(layout.length) / 10, atol=1e-6)
        assert (data["episode_index"] == episode.index).all()
        assert (data["task_index"] == episode.index % len(TASKS)).all()
        assert data["next.done"].tolist() == [False] * (layout.length - 1) + [True]
        assert data["index"][0] == episode.index * layout.length


def test_frames_round_trip(dataset_root, layout, originals):
    ds = LeRobotDataset(dataset_root)
    for episode in (0, 2, 4):
        times = ds.episode_data(episode)["timestamp"]
        for camera in layout.cameras:
            frames = ds.decode_frames(episode, camera, times)
            assert frames.shape == (layout.length, *layout.size, 3) and frames.dtype == np.uint8
            diff = np.abs(frames.astype(np.int16) - originals[episode].video[camera]).mean()
            assert diff < 8, (episode, camera, diff)


def test_frames_come_from_their_own_episode(dataset_root, originals):
    """v3.0 files hold several episodes back to back: episode 2's frames must not be episode 1's or 3's."""
    ds = LeRobotDataset(dataset_root)
    frames = ds.decode_frames(2, "front", [0.0, 0.5, 1.1]).astype(np.int16)
    errors = {e: np.abs(frames - originals[e].video["front"][[0, 5, 11]]).mean() for e in (1, 2, 3)}
    assert errors[2] < 8
    assert errors[1] > 3 * errors[2] and errors[3] > 3 * errors[2]


def test_v3_episodes_share_files(tmp_path):
    root = tmp_path / "v3"
    episodes = make_synthetic_episodes(3, 6, ("front",), 16)
    dims = {"arm": 6, "gripper": 1}
    writer.write_dataset(root, episodes, synthetic_modality(dims, dims, ("front",)), fps=5, version="v3.0")
    ds = LeRobotDataset(root)
    assert len({e.data_path for e in ds.episodes}) == 1
    starts = [e.videos["observation.images.front"].from_s for e in ds.episodes]
    assert starts == pytest.approx([0.0, 1.2, 2.4])


def test_write_refuses_existing_root(tmp_path, layout, originals):
    (tmp_path / "taken").mkdir()
    modality = synthetic_modality({"arm": 6, "gripper": 1}, {"arm": 6, "gripper": 1}, layout.cameras)
    with pytest.raises(FileExistsError, match="taken"):
        writer.write_dataset(tmp_path / "taken", originals[:1], modality, fps=10)


def test_failed_write_leaves_nothing(tmp_path, layout, originals, monkeypatch):
    modality = synthetic_modality({"arm": 6, "gripper": 1}, {"arm": 6, "gripper": 1}, layout.cameras)

    def crash(self, frames):
        raise RuntimeError("disk full")

    monkeypatch.setattr(writer.VideoEncoder, "append", crash)
    with pytest.raises(RuntimeError, match="disk full"):
        writer.write_dataset(tmp_path / "ds", originals[:2], modality, fps=10)
    assert list(tmp_path.iterdir()) == []


def test_write_rejects_wrong_dims(tmp_path, layout, originals):
    modality = synthetic_modality({"arm": 5, "gripper": 1}, {"arm": 6, "gripper": 1}, layout.cameras)
    with pytest.raises(ValueError, match=r"state.arm must be \[T, 5\]"):
        writer.write_dataset(tmp_path / "ds", originals[:1], modality, fps=10)
    assert not (tmp_path / "ds").exists()


def test_separate_columns_and_gaps(tmp_path):
    """Keys may live in other columns (original_key) and leave unused dims in between."""
    from groot.data.modality import ArraySpec, ModalitySpec

    modality = ModalitySpec(
        state={"arm": ArraySpec(0, 3, "observation.state"), "hand": ArraySpec(5, 7, "observation.state"),
               "eef": ArraySpec(0, 4, "observation.eef")},
        action={"arm": ArraySpec(0, 3, "action")}, video={})
    rng = np.random.default_rng(1)
    state = {"arm": rng.random((4, 3)), "hand": rng.random((4, 2)), "eef": rng.random((4, 4))}
    episode = writer.Episode("wave", state=state, action={"arm": rng.random((4, 3))})
    writer.write_dataset(tmp_path / "ds", [episode], modality, fps=10)
    data = LeRobotDataset(tmp_path / "ds").episode_data(0)
    assert data["observation.state"].shape == (4, 7) and data["observation.eef"].shape == (4, 4)
    np.testing.assert_allclose(data["observation.state"][:, 5:7], state["hand"], rtol=1e-6)
    np.testing.assert_array_equal(data["observation.state"][:, 3:5], 0)
    np.testing.assert_allclose(data["observation.eef"], state["eef"], rtol=1e-6)



class _FrameSource:
    """A map-style dataset over (episode, step) that decodes in DataLoader workers."""

    def __init__(self, ds, layout):
        self.ds, self.layout = ds, layout

    def __len__(self):
        return self.layout.num_episodes

    def __getitem__(self, episode):
        times = self.ds.episode_data(episode)["timestamp"]
        return self.ds.decode_frames(episode, "front", times[[0, -1]])


def test_reader_works_in_forked_workers(dataset_root, layout, originals):
    torch = pytest.importorskip("torch")
    import multiprocessing

    if "fork" not in multiprocessing.get_all_start_methods():
        pytest.skip("needs fork")
    ds = LeRobotDataset(dataset_root)
    ds.decode_frames(0, "front", [0.0])  # the parent has used the reader before forking
    loader = torch.utils.data.DataLoader(_FrameSource(ds, layout), batch_size=None, num_workers=2,
                                         multiprocessing_context="fork")
    for episode, frames in enumerate(loader):
        expected = originals[episode].video["front"][[0, -1]]
        assert np.abs(frames.numpy().astype(np.int16) - expected).mean() < 8
