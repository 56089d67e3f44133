"""`groot data ...` through groot.cli.main, as a user runs it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from groot.cli import main
from groot.data.lerobot import LeRobotDataset


@pytest.fixture
def copy(dataset_root, tmp_path):
    return shutil.copytree(dataset_root, tmp_path / dataset_root.name)


def test_validate_ok(dataset_root, capsys):
    assert main(["data", "validate", str(dataset_root)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("OK ") and "5 episodes" in out and "60 frames" in out and "20 frames decoded" in out


def test_validate_opencv_backend(dataset_root):
    pytest.importorskip("cv2")
    assert main(["data", "validate", str(dataset_root), "--video-backend", "opencv"]) == 0


def test_validate_missing_video(copy, capsys):
    path = LeRobotDataset(copy).episode(4).videos["observation.images.front"].path
    path.unlink()
    assert main(["data", "validate", str(copy), "--no-decode"]) == 2
    err = capsys.readouterr().err
    assert f"error: {path}: expected a video file, found no such file" in err


def test_validate_short_video(copy, capsys):
    """A video with fewer frames than its episode: replaced by a 5-frame clip."""
    from groot.data.synthetic import synthetic_frames
    from groot.data.video import encode_video

    ds = LeRobotDataset(copy)
    path = ds.episode(ds.episodes[-1].index).videos["observation.images.wrist"].path
    path.unlink()
    encode_video(path, synthetic_frames(0, 0, 5, *ds.video_resolution("wrist")), fps=10)
    assert main(["data", "validate", str(copy), "--no-decode"]) == 2
    err = capsys.readouterr().err
    assert str(path) in err and "expected frames up to" in err and "camera 'wrist'" in err


def test_validate_broken_modality(copy, capsys):
    modality = json.loads((copy / "meta/modality.json").read_text())
    modality["state"]["arm"]["end"] = 0
    (copy / "meta/modality.json").write_text(json.dumps(modality))
    assert main(["data", "validate", str(copy)]) == 2
    assert "meta/modality.json: key 'state.arm.end': expected an integer > start (0), found 0" in \
        capsys.readouterr().err


def test_info(dataset_root, capsys):
    assert main(["data", "info", str(dataset_root)]) == 0
    out = capsys.readouterr().out
    assert f"version   {dataset_root.name}" in out and "episodes  5   frames 60   fps 10" in out
    assert "video.wrist" in out and "33x46" in out
    assert "state.arm" in out and "dim 6" in out and "observation.state[6:7]" in out
    assert "open the top drawer" in out


def test_stats_command_only_reads_unless_write(copy, capsys):
    (copy / "meta/stats.json").unlink()
    assert main(["data", "stats", str(copy)]) == 0
    assert not (copy / "meta/stats.json").exists()
    assert "not saved" in capsys.readouterr().out
    assert main(["data", "stats", str(copy), "--write"]) == 0
    stats = json.loads((copy / "meta/stats.json").read_text())
    out = capsys.readouterr().out
    line = next(line for line in out.splitlines() if line.startswith("action.gripper[0]"))
    assert float(line.split()[3]) == pytest.approx(stats["action"]["min"][6], rel=1e-3)


def test_plot_writes_pngs(dataset_root, tmp_path, capsys):
    assert main(["data", "plot", str(dataset_root), "--episodes", "0", "3", "--out", str(tmp_path),
                 "--frames", "3"]) == 0
    paths = capsys.readouterr().out.split()
    assert len(paths) == 2
    for path in paths:
        assert Path(path).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_every_flag_has_help(capsys):
    for command in ("info", "validate", "stats", "plot"):
        with pytest.raises(SystemExit):
            main(["data", command, "--help"])
        out = capsys.readouterr().out
        assert "PATH" in out and "meta/info.json" in out
    with pytest.raises(SystemExit):
        main(["data", "plot", "--help"])
    out = capsys.readouterr().out
    assert "--episodes" in out and "one PNG each" in out and "--out" in out
