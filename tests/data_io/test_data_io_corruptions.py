"""`groot data validate` on corrupted copies of a small dataset: every corruption ends with exit 2 and one
`error:` line naming the file and what was expected and found, never a traceback; the checks that
`finetune` runs before training refuse the same datasets."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from groot.cli import main
from groot.data.synthetic import make_synthetic_dataset, synthetic_frames
from groot.data.video import encode_video
from groot.errors import DatasetError

EPISODE = "data/chunk-000/episode_000001.parquet"
VIDEO = "videos/chunk-000/observation.images.front/episode_000001.mp4"


@pytest.fixture(scope="module")
def clean_dataset(tmp_path_factory):
    """v2.1, 3 episodes of 10 steps, one 16x20 camera."""
    return make_synthetic_dataset(tmp_path_factory.mktemp("clean") / "dataset", num_episodes=3,
                                  episode_length=10, cameras=("front",), image_size=(16, 20))


# ---- corruptions: each edits a copy of the clean dataset in place ---------------------------------------
def _edit_json(path, edit):
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))


def _edit_lines(path, edit):
    lines = path.read_text().splitlines()
    path.write_text("\n".join(edit(lines)) + "\n")


def _edit_table(path, edit):
    pq.write_table(edit(pq.read_table(path)), path)


def _set_vector(column_name, row, dim, value):
    def edit(table):
        values = np.stack(table.column(column_name).to_pylist()).astype(np.float32)
        values[row, dim] = value
        flat = pa.array(values.reshape(-1), pa.float32())
        column = pa.FixedSizeListArray.from_arrays(flat, values.shape[1])
        return table.set_column(table.column_names.index(column_name), column_name, column)
    return edit


def _set_scalar(column_name, row, value):
    def edit(table):
        values = table.column(column_name).to_numpy().copy()
        values[row] = value
        return table.set_column(table.column_names.index(column_name), column_name, pa.array(values))
    return edit


def _truncate(path, keep=0.5):
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


CORRUPTIONS = {
    # name: (edit(root), substrings of the error line)
    "info.json missing": (lambda r: (r / "meta/info.json").unlink(),
                          ["meta/info.json", "expected a LeRobot metadata file", "no such file"]),
    "info.json not JSON": (lambda r: (r / "meta/info.json").write_text("{fps: 10"),
                           ["meta/info.json", "expected valid JSON"]),
    "info.json fps negative": (lambda r: _edit_json(r / "meta/info.json", lambda d: d.update(fps=-1)),
                               ["meta/info.json", "'fps'", "a positive number", "-1"]),
    "info.json unknown version": (
        lambda r: _edit_json(r / "meta/info.json", lambda d: d.update(codebase_version="v1.6")),
        ["meta/info.json", "'codebase_version'", "'v1.6'"]),
    "modality.json missing": (lambda r: (r / "meta/modality.json").unlink(), ["modality.json"]),
    "modality slice wider than column": (
        lambda r: _edit_json(r / "meta/modality.json", lambda d: d["state"]["gripper"].update(end=9)),
        ["meta/modality.json", "'state.gripper.end'", "found 9"]),
    "tasks.jsonl missing": (lambda r: (r / "meta/tasks.jsonl").unlink(),
                            ["meta/tasks.jsonl", "no such file"]),
    "episodes.jsonl line not JSON": (lambda r: _edit_lines(r / "meta/episodes.jsonl", lambda ls: [*ls, "{"]),
                                     ["meta/episodes.jsonl", "'line 4'", "one JSON object per line"]),
    "episode missing from episodes.jsonl": (
        lambda r: _edit_lines(r / "meta/episodes.jsonl", lambda ls: [ls[0], ls[2]]),
        ["meta/episodes.jsonl", "episode 1", EPISODE]),
    "episode length wrong": (
        lambda r: _edit_lines(r / "meta/episodes.jsonl",
                              lambda ls: [ls[0], ls[1].replace('"length": 10', '"length": 12'), ls[2]]),
        [EPISODE, "12 rows for episode 1", "found 10 rows"]),
    "episode task not in tasks": (
        lambda r: _edit_lines(r / "meta/episodes.jsonl",
                              lambda ls: [ls[0], ls[1].replace("open the top drawer", "fly"), ls[2]]),
        ["meta/tasks", "episode 1", "'fly'"]),
    "stats.json not JSON": (lambda r: (r / "meta/stats.json").write_text("{"),
                            ["meta/stats.json", "expected valid JSON"]),
    "stats.json with NaN": (
        lambda r: _edit_json(r / "meta/stats.json",
                             lambda d: d["action"]["mean"].__setitem__(2, float("nan"))),
        ["meta/stats.json", "'action.mean'", "finite", "nan"]),
    "stats.json column missing": (
        lambda r: _edit_json(r / "meta/stats.json", lambda d: d.pop("observation.state")),
        ["meta/stats.json", "'observation.state'", "none"]),
    "parquet missing": (lambda r: (r / EPISODE).unlink(), [EPISODE, "no such file"]),
    "parquet truncated": (lambda r: _truncate(r / EPISODE), [EPISODE, "a readable parquet file"]),
    "text instead of parquet": (lambda r: (r / EPISODE).write_text("episode_index,action\n1,2\n"),
                                [EPISODE, "a readable parquet file"]),
    "state column missing": (lambda r: _edit_table(r / EPISODE, lambda t: t.drop(["observation.state"])),
                             [EPISODE, "'observation.state'", "a column", "none"]),
    "NaN in state": (lambda r: _edit_table(r / EPISODE, _set_vector("observation.state", 3, 2, np.nan)),
                     [EPISODE, "'observation.state'", "finite", "nan", "episode 1, row 3, dim 2"]),
    "Inf in action": (lambda r: _edit_table(r / EPISODE, _set_vector("action", 9, 6, -np.inf)),
                      [EPISODE, "'action'", "finite", "-inf", "episode 1, row 9, dim 6"]),
    "NaN in timestamp": (lambda r: _edit_table(r / EPISODE, _set_scalar("timestamp", 4, np.nan)),
                         [EPISODE, "'timestamp'", "finite", "episode 1, row 4"]),
    "task_index no task has": (lambda r: _edit_table(r / EPISODE, _set_scalar("task_index", 5, 7)),
                               [EPISODE, "'task_index'", "meta/tasks.jsonl", "7", "episode 1, row 5"]),
    "timestamps not increasing": (lambda r: _edit_table(r / EPISODE, _set_scalar("timestamp", 5, 0.0)),
                                  [EPISODE, "'timestamp'", "increasing"]),
    "timestamp column missing": (lambda r: _edit_table(r / EPISODE, lambda t: t.drop(["timestamp"])),
                                 [EPISODE, "'timestamp'", "none"]),
    "action vectors too narrow": (
        lambda r: _edit_table(r / EPISODE, lambda t: t.set_column(
            t.column_names.index("action"), "action",
            pa.FixedSizeListArray.from_arrays(pa.array(np.zeros(50, np.float32)), 5))),
        [EPISODE, "'action'", "width 7", "width 5"]),
    "video missing": (lambda r: (r / VIDEO).unlink(), [VIDEO, "no such file"]),
    "video truncated": (lambda r: _truncate(r / VIDEO), [VIDEO, "a readable video"]),
    "video random bytes": (lambda r: (r / VIDEO).write_bytes(np.random.default_rng(0).bytes(4096)),
                           [VIDEO, "a readable video"]),
    "video empty": (lambda r: (r / VIDEO).write_bytes(b""), [VIDEO, "a readable video"]),
    "video too short": (lambda r: encode_video(r / VIDEO, synthetic_frames(1, 0, 4, 16, 20), fps=10),
                        [VIDEO, "expected frames up to", "4 frames"]),
    "video wrong size": (lambda r: encode_video(r / VIDEO, synthetic_frames(1, 0, 10, 24, 20), fps=10),
                         [VIDEO, "frames of 16x20", "found 24x20"]),
}


@pytest.fixture
def corrupted(clean_dataset, tmp_path, request):
    root = shutil.copytree(clean_dataset, tmp_path / "dataset")
    CORRUPTIONS[request.param][0](root)
    return root, CORRUPTIONS[request.param][1]


@pytest.mark.parametrize("corrupted", list(CORRUPTIONS), indirect=True)
def test_validate_rejects_corruption_in_one_line(corrupted, capsys):
    root, expected = corrupted
    assert main(["data", "validate", str(root)]) == 2
    err = capsys.readouterr().err
    lines = [line for line in err.replace("\r", "\n").splitlines()
             if line.strip() and not line.startswith("validate: ")]  # the progress bar's redraws
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for part in expected:
        assert part in lines[0], (part, lines[0])


def test_validate_accepts_the_clean_dataset(clean_dataset, capsys):
    assert main(["data", "validate", str(clean_dataset)]) == 0
    assert capsys.readouterr().out.startswith("OK ")


# the corruptions `finetune` meets before training (it recomputes an unusable meta/stats.json instead)
FINETUNE_CHECKED = [name for name in CORRUPTIONS if not name.startswith("stats.json")]


@pytest.mark.parametrize("corrupted", FINETUNE_CHECKED, indirect=True)
def test_training_data_checks_refuse_corruption(corrupted):
    from groot.data.configs import DataConfig
    from groot.data.writer import TASK_COLUMN
    from groot.train.data import build_dataset

    root, expected = corrupted
    config = DataConfig("synthetic", ["video.front"], ["state.arm", "state.gripper"],
                        ["action.arm", "action.gripper"], [TASK_COLUMN], image_size=16, color_jitter=None)
    with pytest.raises(DatasetError) as error:
        build_dataset([str(root)], config, "new_embodiment", "pyav", True, True, seed=0)
    assert expected[0] in str(error.value)
