"""Model cards: the README.md of a saved checkpoint, and the provenance record it is generated from.

`experiment_cfg/provenance.json` = {"training": {"command", "datasets", "base_model", "global_step"},
"eval_results": {name: value}}; either part may be absent. A checkpoint written by `groot finetune` has
no provenance file: its training record is derived from `training_state/trainer_state.json`.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from groot.model.config import GR00TN15Config

PROVENANCE_FILE = "experiment_cfg/provenance.json"
TRAINER_STATE_FILE = "training_state/trainer_state.json"


def read_provenance(root: Path) -> dict[str, Any]:
    """The checkpoint's provenance record (empty when nothing is known)."""
    path = root / PROVENANCE_FILE
    if path.is_file():
        record = json.loads(path.read_text())
        return record if isinstance(record, dict) else {}
    trainer_state = root / TRAINER_STATE_FILE
    if trainer_state.is_file():
        state = json.loads(trainer_state.read_text())
        training = training_from_finetune_config(state.get("config") or {})
        if training:
            training["global_step"] = state.get("global_step")
            return {"training": training}
    return {}


def training_from_finetune_config(values: Mapping[str, Any]) -> dict[str, Any]:
    """A `groot finetune` config (as saved in trainer_state.json) -> the training record."""
    from groot.train.finetune_config import FinetuneConfig
    from groot.utils.cli_args import command_line

    if not values:
        return {}
    return {"command": shlex.join(["groot", "finetune", *command_line(FinetuneConfig, dict(values))]),
            "datasets": list(values.get("dataset_path") or []), "base_model": values.get("base_model")}


def render_model_card(config: GR00TN15Config, *, embodiment_tag: str | None = None,
                      data_config_name: str | None = None, inputs: Mapping[str, str] | None = None,
                      outputs: Mapping[str, str] | None = None, provenance: Mapping[str, Any] | None = None,
                      load_path: str = "CHECKPOINT") -> str:
    """README.md text: hub metadata header, model summary, inputs / outputs (key -> shape text), how to
    load it from `load_path`, and the training command, data and eval results where `provenance` has them."""
    provenance = provenance or {}
    training = provenance.get("training") or {}
    results = provenance.get("eval_results") or {}
    bb, ah = config.backbone_cfg, config.action_head_cfg
    base_model = training.get("base_model")
    header = ["---", "library_name: groot", "pipeline_tag: robotics",
              "tags: [robotics, gr00t, gr00t-n1.5, vision-language-action]"]
    if isinstance(base_model, str) and "/" in base_model and not Path(base_model).exists():
        header.append(f"base_model: {base_model}")
    header.append("---")
    lines = [*header, "", "# GR00T N1.5 policy" if embodiment_tag else "# GR00T N1.5 model", ""]
    lines += ["GR00T N1.5 vision-language-action model (Eagle 2.5 VL backbone + flow-matching DiT action "
              "head), saved by groot.", "",
              "| | |", "|---|---|",
              f"| preset | `{config.preset}` |",
              f"| image size | {bb.vision.image_size} px, {bb.num_image_tokens} tokens per image |",
              f"| tokenizer | `{bb.tokenizer}` |",
              f"| action horizon | {ah.action_horizon} steps, {ah.num_inference_timesteps} denoising steps |"]
    if embodiment_tag:
        lines.append(f"| embodiment tag | `{embodiment_tag}` |")
    if data_config_name:
        lines.append(f"| data config | `{data_config_name}` |")
    if inputs or outputs:
        lines += ["", "## Inputs and outputs", "", "| key | shape |", "|---|---|"]
        lines += [f"| `{key}` | {shape} |" for key, shape in {**(inputs or {}), **(outputs or {})}.items()]
    lines += ["", "## Use", ""]
    if embodiment_tag:
        lines += ["```python", "from groot.policy import Policy", "",
                  f"policy = Policy.from_pretrained({load_path!r})",
                  "action = policy.get_action(observation)  # {\"action.<key>\": float32 [horizon, dim]}",
                  "```", "", f"or serve it: `groot serve --model-path {load_path} --embodiment-tag "
                  f"{embodiment_tag}`"]
    else:
        lines += ["```python", "from groot.model.gr00t_n15 import GR00TN15", "",
                  f"model = GR00TN15.from_pretrained({load_path!r})", "```", "",
                  f"or fine-tune it: `groot finetune --base-model {load_path} --dataset-path DATASET ...`"]
    lines += ["", "## Training", ""]
    if training:
        if training.get("command"):
            lines += ["```", str(training["command"]), "```", ""]
        if training.get("datasets"):
            lines.append("Data: " + ", ".join(f"`{d}`" for d in training["datasets"]))
        if base_model:
            lines.append(f"Base model: `{base_model}`")
        if training.get("global_step") is not None:
            lines.append(f"Steps: {training['global_step']}")
    else:
        lines.append("Not recorded.")
    lines += ["", "## Evaluation", ""]
    if results:
        lines += ["| metric | value |", "|---|---|"]
        lines += [f"| {name} | {value} |" for name, value in results.items()]
    else:
        lines.append("No evaluation results recorded.")
    return "\n".join(lines) + "\n"
