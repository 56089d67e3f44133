"""Scripted pick-and-place experts for LIBERO, driven by privileged simulator state.

The expert reads object poses and collision-geometry extents straight from MuJoCo and runs a staged
controller: pre-grasp above the object -> descend -> close -> lift (re-grasp up to 3 times when the
object did not come along) -> transport at a safe height -> lower over the target -> release -> retreat.
The gripper points down with its fingers closing across the object's narrow horizontal axis; objects
wider than the gripper opening (bowls) are grasped at the rim. The goal object and the target come from
the task's parsed BDDL goal (`["in" | "on", object, target]`).

    expert = PickPlaceExpert(env, rng=np.random.default_rng(0), noise=0.1)
    obs = env.reset(0); expert.reset()
    while not done: obs, success, done = env.step(expert.act())
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from groot.sim.libero import CLOSE, OPEN, LiberoEnv

POS_SCALE = 0.05  # metres per unit of OSC_POSE position action
ROT_SCALE = 0.5  # radians per unit of OSC_POSE rotation action
MAX_GRIPPER_WIDTH = 0.075  # wider objects are grasped at the rim
SAFE_CLEARANCE = 0.06  # transport: object bottom this far above the target's top
PRE_GRASP_HEIGHT = 0.08
MAX_GRASP_ATTEMPTS = 3


class UnsupportedTaskError(ValueError):
    """The task's goal is not a single pick-and-place ("in" / "on") predicate."""


@dataclasses.dataclass(frozen=True)
class Box:
    """World-axis-aligned bounding box of a body (or a site region)."""

    low: np.ndarray  # [3]
    high: np.ndarray  # [3]

    @property
    def center(self) -> np.ndarray:
        return (self.low + self.high) / 2

    @property
    def size(self) -> np.ndarray:
        return self.high - self.low


def pick_place_goal(goal: list[list[str]]) -> tuple[str, str, str]:
    """BDDL goal -> (relation "in" | "on", object, target); raises UnsupportedTaskError otherwise."""
    if len(goal) != 1 or len(goal[0]) != 3 or goal[0][0].lower() not in ("in", "on"):
        raise UnsupportedTaskError(f"the scripted expert handles one 'in'/'on' goal predicate, found {goal}")
    relation, obj, target = goal[0]
    return relation.lower(), obj, target


def supports(goal: list[list[str]]) -> bool:
    try:
        pick_place_goal(goal)
    except UnsupportedTaskError:
        return False
    return True


class SceneGeometry:
    """Privileged geometry queries on a live LIBERO (robosuite) environment."""

    def __init__(self, env: LiberoEnv):
        self.inner = env.inner
        self.model = self.inner.sim.model._model  # mujoco.MjModel
        self.data = self.inner.sim.data._data  # mujoco.MjData
        self._geoms: dict[str, np.ndarray] = {}

    def is_site(self, name: str) -> bool:
        return name in self.inner.object_sites_dict

    def body_id(self, name: str) -> int:
        return self.inner.obj_body_id[name]

    def origin(self, name: str) -> np.ndarray:
        """Body origin (what LIBERO's predicates test), or the site position. [3]"""
        if self.is_site(name):
            return self.inner.sim.data.get_site_xpos(name).copy()
        return self.data.xpos[self.body_id(name)].copy()

    def rotation(self, name: str) -> np.ndarray:
        """Body (or site) orientation in the world. [3, 3]"""
        if self.is_site(name):
            return self.inner.sim.data.get_site_xmat(name).reshape(3, 3).copy()
        return self.data.xmat[self.body_id(name)].reshape(3, 3).copy()

    def box(self, name: str) -> Box:
        """World AABB of a body's collision geometry, or of a site region's box."""
        if self.is_site(name):
            half = np.abs(self.rotation(name) @ np.asarray(self.inner.object_sites_dict[name].size))
            centre = self.origin(name)
            return Box(centre - half, centre + half)
        corners = self.corners(name)
        return Box(corners.min(axis=0), corners.max(axis=0))

    def corners(self, name: str) -> np.ndarray:
        """Bounding-box corners of every collision geom of a body subtree, in the world. [8 * G, 3]"""
        out = []
        signs = np.array([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)], dtype=np.float64)
        for geom in self._collision_geoms(name):
            centre, half = self.model.geom_aabb[geom, :3], self.model.geom_aabb[geom, 3:]
            local = centre + signs * half  # [8, 3] in the geom frame
            rotation = self.data.geom_xmat[geom].reshape(3, 3)
            out.append(self.data.geom_xpos[geom] + local @ rotation.T)
        return np.concatenate(out)

    def local_extents(self, name: str) -> np.ndarray:
        """Full extents of a body's collision geometry along its own x, y, z axes. [3]"""
        local = (self.corners(name) - self.origin(name)) @ self.rotation(name)
        return local.max(axis=0) - local.min(axis=0)

    def _collision_geoms(self, name: str) -> np.ndarray:
        if name not in self._geoms:
            root = self.body_id(name)
            bodies = {root}
            for body in range(root + 1, self.model.nbody):
                if self.model.body_parentid[body] in bodies:
                    bodies.add(body)
            geoms = np.flatnonzero(np.isin(self.model.geom_bodyid, list(bodies)))
            colliding = geoms[(self.model.geom_contype[geoms] | self.model.geom_conaffinity[geoms]) != 0]
            self._geoms[name] = colliding if len(colliding) else geoms
        return self._geoms[name]

    def parent_of_site(self, name: str) -> str | None:
        parent = getattr(self.inner.object_sites_dict[name], "parent_name", None)
        return parent if parent in self.inner.obj_body_id else None

    def finger_axis(self) -> np.ndarray:
        """Horizontal unit vector from one finger pad to the other (the closing direction). [3]"""
        pads = [self.data.geom(name).xpos.copy() for name in
                ("gripper0_finger1_pad_collision", "gripper0_finger2_pad_collision")]
        axis = pads[1] - pads[0]
        axis[2] = 0.0
        return axis / max(np.linalg.norm(axis), 1e-9)

    def gripper_rotation(self) -> np.ndarray:
        """Orientation of the gripper site; its z axis is the approach direction. [3, 3]"""
        return self.data.site_xmat[self.inner.robots[0].eef_site_id].reshape(3, 3).copy()

    def other_objects(self, exclude: set[str]) -> list[str]:
        return [name for name in self.inner.objects_dict if name not in exclude]


@dataclasses.dataclass
class Waypoint:
    """One stage: servo the gripper site to `position` with command `gripper`, then hold `hold` steps."""

    name: str
    position: np.ndarray  # [3] world
    gripper: float
    tolerance: float = 0.01
    hold: int = 0
    budget: int = 80  # give up on reaching after this many steps and move on


class PickPlaceExpert:
    """Staged pick-and-place controller for one LIBERO env (call `reset()` after every `env.reset`)."""

    def __init__(self, env: LiberoEnv, rng: np.random.Generator | None = None, noise: float = 0.0):
        self.env = env
        self.relation, self.object, self.target = pick_place_goal(env.task.goal)
        self.rng = rng if rng is not None else np.random.default_rng(0)
        self.noise = noise
        self.geometry = SceneGeometry(env)
        self.plan: list[Waypoint] = []
        self.stage_steps = 0
        self.attempts = 0
        self.yaw_axis = np.array([1.0, 0.0, 0.0])
        self.grasp_offset = np.zeros(3)

    # ---- plan ----------------------------------------------------------------------------------------
    def reset(self) -> None:
        self.attempts = 0
        self._plan_grasp()

    def _plan_grasp(self) -> None:
        geometry = self.geometry
        box = geometry.box(self.object)
        point, self.yaw_axis = self._grasp_point(box)
        jitter = self.rng.normal(0.0, 0.004, 3) * (self.noise > 0)
        jitter[2] = 0.0
        point = point + jitter
        above = point + np.array([0, 0, PRE_GRASP_HEIGHT + self.rng.uniform(0, 0.03) * (self.noise > 0)])
        lift = point + np.array([0, 0, 0.12])
        self.plan = [
            Waypoint("pre-grasp", above, OPEN, tolerance=0.012, budget=90),
            Waypoint("descend", point, OPEN, tolerance=0.008, budget=60),
            Waypoint("close", point, CLOSE, tolerance=1.0, hold=12, budget=12),
            Waypoint("lift", lift, CLOSE, tolerance=0.02, budget=50),
        ]
        self.grasp_start_z = box.low[2]
        self.stage_steps = 0

    def _grasp_point(self, box: Box) -> tuple[np.ndarray, np.ndarray]:
        """-> (gripper-site target [3], horizontal axis the fingers should close along [3])."""
        extents = self.geometry.local_extents(self.object)
        rotation = self.geometry.rotation(self.object)
        horizontal = [i for i in np.argsort(np.abs(rotation[2]))[:2]]  # the two most horizontal body axes
        narrow, wide = sorted(horizontal, key=lambda i: extents[i])
        height = box.size[2]
        if extents[narrow] <= MAX_GRIPPER_WIDTH:
            axis = _horizontal_unit(rotation[:, narrow])
            depth = min(0.03, height / 2)
            return np.array([box.center[0], box.center[1], box.high[2] - depth]), axis
        # rim grasp: the rim point with the most clearance from other objects; fingers close radially
        radius = min(extents[narrow], extents[wide]) / 2
        others = [self.geometry.origin(n)[:2] for n in
                  self.geometry.other_objects({self.object, self.target, self._target_parent()})]
        best, best_clearance = None, -1.0
        for angle in np.linspace(0, 2 * np.pi, 16, endpoint=False):
            direction = np.array([np.cos(angle), np.sin(angle), 0.0])
            rim = box.center + direction * (radius - 0.012)
            clearance = min((np.linalg.norm(rim[:2] - o) for o in others), default=1.0)
            clearance -= 0.02 * (direction[0] > 0.5)  # mildly prefer rims facing the robot
            if clearance > best_clearance:
                best, best_clearance = (rim, direction), clearance
        rim, direction = best
        return np.array([rim[0], rim[1], box.high[2] - 0.02]), direction

    def _target_parent(self) -> str:
        if self.geometry.is_site(self.target):
            return self.geometry.parent_of_site(self.target) or self.target
        return self.target

    def _plan_place(self) -> None:
        geometry = self.geometry
        eef = self._eef()
        object_box = geometry.box(self.object)
        below = eef[2] - object_box.low[2]  # gripper site height above the object's bottom
        if self.relation == "in" or geometry.is_site(self.target):
            target_box = geometry.box(self.target)
            anchor_xy = target_box.center[:2]
            held_xy = object_box.center[:2] if self.relation == "in" else geometry.origin(self.object)[:2]
            bottom = target_box.low[2] + 0.04 if self.relation == "in" else target_box.high[2] + 0.015
            top = geometry.box(self._target_parent()).high[2]
        else:
            target_box = geometry.box(self.target)
            anchor_xy = geometry.origin(self.target)[:2]
            held_xy = geometry.origin(self.object)[:2]
            bottom = target_box.high[2] + 0.015
            top = target_box.high[2]
        offset_xy = eef[:2] - held_xy
        xy = anchor_xy + offset_xy + self.rng.normal(0.0, 0.003, 2) * (self.noise > 0)
        safe_z = max(top + SAFE_CLEARANCE, object_box.low[2] + 0.02, bottom) + below
        release_z = bottom + below
        self.plan = [
            Waypoint("raise", np.array([eef[0], eef[1], safe_z]), CLOSE, tolerance=0.02, budget=40),
            Waypoint("transport", np.array([xy[0], xy[1], safe_z]), CLOSE, tolerance=0.015, budget=120),
            Waypoint("lower", np.array([xy[0], xy[1], release_z]), CLOSE, tolerance=0.01, budget=60),
            Waypoint("release", np.array([xy[0], xy[1], release_z]), OPEN, tolerance=1.0, hold=10, budget=10),
            Waypoint("retreat", np.array([xy[0], xy[1], safe_z + 0.05]), OPEN, tolerance=0.02, budget=60),
        ]
        self.stage_steps = 0

    # ---- act ---------------------------------------------------------------------------------------------
    def act(self) -> np.ndarray:
        """The expert's next 7-dim OSC_POSE action for the current state (noise-free)."""
        waypoint = self._current_waypoint()
        eef = self._eef()
        error = waypoint.position - eef
        position = np.clip(error / POS_SCALE * 1.5, -1.0, 1.0)
        rotation = self._rotation_action()
        self.stage_steps += 1
        return np.concatenate([position, rotation, [waypoint.gripper]])

    def perturb(self, action: np.ndarray) -> np.ndarray:
        """`action` with the configured Gaussian noise on position (std `noise`) and rotation (0.3x)."""
        if self.noise <= 0:
            return action
        position = np.clip(action[:3] + self.rng.normal(0.0, self.noise, 3), -1.0, 1.0)
        rotation = np.clip(action[3:6] + self.rng.normal(0.0, self.noise * 0.3, 3), -1.0, 1.0)
        return np.concatenate([position, rotation, action[6:]])

    def _current_waypoint(self) -> Waypoint:
        while True:
            if not self.plan:  # finished: hover in place with an open gripper
                return Waypoint("done", self._eef(), OPEN)
            waypoint = self.plan[0]
            reached = np.linalg.norm(waypoint.position - self._eef()) < waypoint.tolerance
            if not (reached and self.stage_steps >= waypoint.hold) and self.stage_steps < waypoint.budget:
                return waypoint
            self._advance()

    def _advance(self) -> None:
        finished = self.plan.pop(0)
        self.stage_steps = 0
        if finished.name != "lift":
            return
        lifted = self.geometry.box(self.object).low[2] > self.grasp_start_z + 0.04
        if lifted:
            self._plan_place()
        elif self.attempts + 1 < MAX_GRASP_ATTEMPTS:
            self.attempts += 1
            self._plan_grasp()
            self.plan.insert(0, Waypoint("let go", self._eef() + np.array([0, 0, 0.02]), OPEN, 1.0, 8, 8))

    def _rotation_action(self) -> np.ndarray:
        """Keep the gripper pointing down and its fingers closing along `yaw_axis`. [3]"""
        rotation = self.geometry.gripper_rotation()
        down = rotation[:, 2]  # gripper approach axis
        tilt = np.cross(down, np.array([0.0, 0.0, -1.0]))  # axis * sin(angle)
        fingers = self.geometry.finger_axis()
        yaw = np.arctan2(np.cross(fingers, self.yaw_axis)[2], float(fingers @ self.yaw_axis))
        yaw = (yaw + np.pi / 2) % np.pi - np.pi / 2  # the fingers are symmetric: +-180 deg is the same grasp
        error = tilt + np.array([0.0, 0.0, yaw])
        return np.clip(error / ROT_SCALE * 1.5, -1.0, 1.0)

    def _eef(self) -> np.ndarray:
        return np.asarray(self.env.raw_obs["robot0_eef_pos"], dtype=np.float64)


def _horizontal_unit(vector: np.ndarray) -> np.ndarray:
    flat = np.array([vector[0], vector[1], 0.0])
    norm = np.linalg.norm(flat)
    return flat / norm if norm > 1e-6 else np.array([1.0, 0.0, 0.0])


def run_expert_episode(env: LiberoEnv, init_state_index: int, rng: np.random.Generator, noise: float = 0.0,
                       record: bool = True) -> dict[str, Any]:
    """One expert rollout from init state `init_state_index`. With `noise`, the executed actions are
    perturbed but the recorded ones are the expert's noise-free actions for the states reached (as in
    DART): the data then shows how to correct small deviations instead of imitating noise.

    -> {"success": bool, "steps": int, "observations": [obs...] (before each action), "actions": [[7]...]}"""
    obs = env.reset(init_state_index)
    expert = PickPlaceExpert(env, rng=rng, noise=noise)
    expert.reset()
    observations, actions = [], []
    success = done = False
    while not done:
        action = expert.act()
        if record:
            observations.append(obs)
            actions.append(action.astype(np.float32))
        obs, success, done = env.step(expert.perturb(action))
    return {"success": success, "steps": env.steps, "observations": observations, "actions": actions}


class ExpertPolicy:
    """The scripted expert behind the policy interface (`get_action(obs) -> {"action.<k>": [16, D]}`).

    It repeats its current action over the chunk, so it behaves like the expert with action horizon 1 and
    degrades gracefully with longer horizons. Useful to test evaluation loops without a trained model."""

    def __init__(self, env: LiberoEnv, noise: float = 0.0, seed: int = 0, horizon: int = 16):
        self.expert = PickPlaceExpert(env, rng=np.random.default_rng(seed), noise=noise)
        self.env = env
        self.horizon = horizon

    def get_action(self, observation: dict[str, Any]) -> dict[str, np.ndarray]:
        if self.env.steps == 0:  # a new episode: plan from the current scene
            self.expert.reset()
        action = self.expert.perturb(self.expert.act()).astype(np.float32)
        action = np.tile(action, (self.horizon, 1))  # [16, 7]
        return {"action.eef_delta_pos": action[:, :3], "action.eef_delta_rot": action[:, 3:6],
                "action.gripper": action[:, 6:7]}
