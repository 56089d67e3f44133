"""Open-loop evaluation (spec 11): replay recorded trajectories, compare predicted and recorded actions.

For trajectory i and step s < steps, the ground truth is the concatenation over action keys of
`action.<key>[0]` of the raw step s; every `action_horizon` steps the policy is queried on the raw
observation of step s and the first `action_horizon` predicted steps are appended. Errors are in
original (un-normalized) units: MSE = mean((gt - pred)^2), MAE = mean(|gt - pred|) over steps x dims.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from groot.data.configs import DataConfig
from groot.data.transforms import split_key
from groot.errors import ConfigError
from groot.policy_protocol import PolicyLike

RawStep = dict[str, Any]


@dataclass
class TrajectoryResult:
    trajectory: int
    steps: int
    mse: float
    mae: float
    mse_per_key: dict[str, float]
    inference_steps: list[int]
    ground_truth: np.ndarray = field(repr=False)  # [steps, D_total]
    prediction: np.ndarray = field(repr=False)  # [steps, D_total]
    state: np.ndarray | None = field(repr=False)  # [steps, D_total] when the state matches the action

    def summary(self) -> dict[str, Any]:
        return {"trajectory": self.trajectory, "steps": self.steps, "mse": self.mse, "mae": self.mae,
                "mse_per_key": self.mse_per_key, "inference_steps": self.inference_steps}


def evaluate_trajectory(policy: PolicyLike, raw_step: Callable[[int], RawStep], trajectory: int,
                        length: int, observation_keys: Sequence[str], action_keys: Sequence[str],
                        steps: int, action_horizon: int) -> TrajectoryResult:
    """raw_step(s) -> the raw step dict at base index s of this trajectory (no transforms)."""
    steps = min(steps, length)
    truths, predictions, states, inference_steps = [], [], [], []
    for s in range(steps):
        step = raw_step(s)
        truths.append([np.asarray(step[key], np.float32)[0] for key in action_keys])  # each [D_key]
        states.append(_matching_state(step, action_keys))
        if s % action_horizon == 0:
            chunk = policy.get_action({key: step[key] for key in observation_keys})
            predictions.extend(_first_steps(chunk, action_keys, action_horizon))
            inference_steps.append(s)
    dims = [len(part) for part in truths[0]]
    ground_truth = np.stack([np.concatenate(parts) for parts in truths])  # [steps, D_total]
    prediction = np.stack([np.concatenate(parts) for parts in predictions[:steps]])  # [steps, D_total]
    error = prediction - ground_truth
    bounds = np.cumsum([0, *dims])
    per_key = {key: float(np.mean(error[:, lo:hi] ** 2))
               for key, lo, hi in zip(action_keys, bounds[:-1], bounds[1:], strict=True)}
    state = np.stack(states) if all(s is not None for s in states) else None
    return TrajectoryResult(trajectory=trajectory, steps=steps, mse=float(np.mean(error**2)),
                            mae=float(np.mean(np.abs(error))), mse_per_key=per_key,
                            inference_steps=inference_steps, ground_truth=ground_truth,
                            prediction=prediction, state=state)


def _first_steps(chunk: Mapping[str, Any], action_keys: Sequence[str], count: int) -> list[list[np.ndarray]]:
    """{"action.<k>": [16, D]} -> the first `count` steps as lists of per-key vectors."""
    missing = [key for key in action_keys if key not in chunk]
    if missing:
        raise KeyError(f"the policy's answer lacks {', '.join(missing)}; found {', '.join(chunk)}")
    arrays = {key: np.asarray(chunk[key], np.float32) for key in action_keys}
    for key, array in arrays.items():
        if array.ndim != 2 or array.shape[0] < count:
            raise ValueError(f"{key}: expected an action chunk [>= {count}, D], found {list(array.shape)}")
    return [[arrays[key][j] for key in action_keys] for j in range(count)]


def _matching_state(step: RawStep, action_keys: Sequence[str]) -> np.ndarray | None:
    """The state keys named like the action keys, when they exist with the same dims (for plotting)."""
    parts = []
    for key in action_keys:
        state_key = "state." + key.removeprefix("action.")
        if state_key not in step or np.shape(step[state_key])[-1] != np.shape(step[key])[-1]:
            return None
        parts.append(np.asarray(step[state_key], np.float32)[0])
    return np.concatenate(parts)


def plot_trajectory(result: TrajectoryResult, action_keys: Sequence[str], dims: Sequence[int],
                    path: str | Path) -> Path:
    """One panel per action dim: recorded action, prediction (inference points in red), state if any."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [f"{key.removeprefix('action.')}[{d}]" for key, dim in zip(action_keys, dims, strict=True)
              for d in range(dim)]
    columns = min(4, len(labels))
    rows = -(-len(labels) // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(4 * columns, 2.6 * rows), squeeze=False)
    t = np.arange(result.steps)
    for i, ax in enumerate(axes.flat):
        if i >= len(labels):
            ax.axis("off")
            continue
        if result.state is not None:
            ax.plot(t, result.state[:, i], color="0.6", lw=1, label="state")
        ax.plot(t, result.ground_truth[:, i], color="tab:blue", lw=1.5, label="recorded action")
        ax.plot(t, result.prediction[:, i], color="tab:orange", lw=1.5, label="predicted action")
        ax.plot(result.inference_steps, result.prediction[result.inference_steps, i], "o", color="red",
                ms=4, label="inference point")
        ax.set_title(labels[i], fontsize=9)
        ax.tick_params(labelsize=7)
    axes.flat[0].legend(fontsize=7, loc="best")
    figure.suptitle(f"trajectory {result.trajectory}: MSE {result.mse:.4g}, MAE {result.mae:.4g}")
    figure.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def write_summary(results: Sequence[TrajectoryResult], settings: Mapping[str, Any], path: str | Path) -> dict:
    """Per-trajectory and mean MSE / MAE plus the run settings -> JSON file; returns the summary."""
    summary = {
        "settings": dict(settings),
        "mean_mse": float(np.mean([r.mse for r in results])),
        "mean_mae": float(np.mean([r.mae for r in results])),
        "trajectories": [r.summary() for r in results],
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def raw_data_config(modality_config: Mapping[str, Any]) -> DataConfig:
    """A DataConfig that samples exactly the policy's modality config (for `GrootDataset(transform=False)`).
    Needs video, state and language on the same steps, as every N1.5 config has."""
    indices = {group: list(modality_config[group].delta_indices) for group in ("video", "state", "language")}
    if len({tuple(v) for v in indices.values()}) > 1:
        raise ValueError(f"the policy samples video, state and language at different steps {indices}; "
                         "open-loop evaluation needs them equal")
    keys = {group: list(config.modality_keys) for group, config in modality_config.items()}
    return DataConfig("open-loop", keys["video"], keys["state"], keys["action"], keys["language"],
                      observation_indices=indices["video"],
                      action_indices=list(modality_config["action"].delta_indices))


def run_open_loop(policy: PolicyLike, dataset_path: str | Path, embodiment_tag: str, out_dir: str | Path,
                  trajs: int = 1, steps: int = 150, action_horizon: int = 16, video_backend: str = "pyav",
                  settings: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Evaluate the first `trajs` trajectories of a dataset; writes `trajectory_<id>.png` per trajectory
    and `summary.json` into `out_dir` and returns the summary."""
    from tqdm import tqdm

    from groot.data.dataset import GrootDataset

    modality_config = policy.get_modality_config()
    horizon = len(modality_config["action"].delta_indices)
    if not 1 <= action_horizon <= horizon:
        raise ConfigError(f"action_horizon must be in [1, {horizon}] (the policy's chunk length), "
                         f"found {action_horizon}")
    dataset = GrootDataset(dataset_path, raw_data_config(modality_config), embodiment_tag,
                           video_backend=video_backend, transform=False)
    observation_keys = [key for group in ("video", "state", "language")
                        for key in modality_config[group].modality_keys]
    action_keys = list(modality_config["action"].modality_keys)
    dims = [dataset.metadata.dim(*split_key(key)) for key in action_keys]
    out_dir = Path(out_dir)
    selected = list(zip(dataset.trajectory_ids[:trajs].tolist(), dataset.trajectory_lengths[:trajs].tolist(),
                        strict=True))
    results = []
    for trajectory, length in tqdm(selected, desc="open-loop trajectories", unit="traj"):
        result = evaluate_trajectory(policy, lambda s, t=trajectory: dataset.raw_step(t, s), trajectory,
                                     length, observation_keys, action_keys, steps, action_horizon)
        plot_trajectory(result, action_keys, dims, out_dir / f"trajectory_{trajectory}.png")
        results.append(result)
    run_settings = {"dataset_path": str(dataset_path), "embodiment_tag": embodiment_tag, "trajs": trajs,
                    "steps": steps, "action_horizon": action_horizon, **(settings or {})}
    return write_summary(results, run_settings, out_dir / "summary.json")
