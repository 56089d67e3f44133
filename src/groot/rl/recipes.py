"""Default PPO settings per model: the reference recipe for the 3B models, documented choices for the
small presets.

`n1.5-3b` and `n1.6-3b` are the published LIBERO-Spatial recipes (GR00T N1.5 / N1.6 PPO with flow-SDE
noise). `small` (also `tiny`, `n1.6-small`, `n1.6-tiny`) is this project's choice for CPU- or
single-GPU-sized runs, not a tuned result: the 3B recipe's PPO and critic settings, a 5x larger actor
learning rate (a model of ~1/20 the size trained from a small fine-tune), 8 executed steps per chunk
(the `groot sim eval` default), 16 environments and one rollout episode per iteration.
"""

from __future__ import annotations

from typing import Any

RECIPES: dict[str, dict[str, Any]] = {
    "n1.5-3b": {
        "actor_lr": 5e-6,
        "value_lr": 1e-4,
        "update_epochs": 4,
        "executed_steps": 5,
        "num_envs": 64,
        "rollout_epochs": 8,
        "max_episode_steps": 240,
        "global_batch_size": 1024,
        "micro_batch_size": 128,
        "clip_log_ratio": None,
        "noise_level": 0.5,
        "denoising_steps": 4,
    },
    "n1.6-3b": {
        "actor_lr": 5e-6,
        "value_lr": 1e-4,
        "update_epochs": 1,
        "executed_steps": 16,
        "num_envs": 8,
        "rollout_epochs": 1,
        "max_episode_steps": 240,
        "global_batch_size": 8,
        "micro_batch_size": 2,
        "clip_log_ratio": 20.0,
        "noise_level": 0.5,
        "denoising_steps": 4,
    },
    "small": {
        "actor_lr": 2.5e-5,
        "value_lr": 1e-4,
        "update_epochs": 4,
        "executed_steps": 8,
        "num_envs": 16,
        "rollout_epochs": 1,
        "max_episode_steps": 240,
        "global_batch_size": 256,
        "micro_batch_size": 64,
        "clip_log_ratio": None,
        "noise_level": 0.5,
        "denoising_steps": 4,
    },
}
PRESET_RECIPES = {
    "n1.5-3b": "n1.5-3b",
    "n1.6-3b": "n1.6-3b",
    "small": "small",
    "tiny": "small",
    "n1.6-small": "small",
    "n1.6-tiny": "small",
}


def recipe_for(preset: str, name: str = "auto") -> tuple[str, dict[str, Any]]:
    """(recipe name, its settings) for a model preset; `name` other than "auto" picks one explicitly."""
    from groot.errors import ConfigError

    chosen = PRESET_RECIPES.get(preset, "n1.5-3b") if name == "auto" else name
    if chosen not in RECIPES:
        raise ConfigError(f"--recipe: expected auto or one of {', '.join(RECIPES)}, found {name!r}")
    return chosen, dict(RECIPES[chosen])
