"""`groot model ...` sub-commands: parameter inventory and size summary of a preset or checkpoint."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from groot.utils.cli_args import add_command, add_group, arg

SOURCE_HELP = ("a model preset (n1.5-3b, small, tiny, n1.6-3b, n1.6-small, n1.6-tiny) or a checkpoint "
               "directory (its config.json is read)")


@dataclass
class KeysArgs:
    source: str = arg(help=SOURCE_HELP, positional=True)


@dataclass
class InfoArgs:
    source: str = arg(help=SOURCE_HELP, positional=True)
    format: Literal["table", "json"] = arg("table", "output as an aligned table or as one JSON object")


def meta_model(source: str):
    """Build the model for a preset name or checkpoint directory on the meta device (no memory)."""
    from pathlib import Path

    import torch

    from groot.model.checkpoint import checkpoint_config
    from groot.model.config import preset_config
    from groot.model.gr00t_n16 import model_class

    path = Path(source)
    config = checkpoint_config(path) if path.is_dir() else preset_config(source)
    with torch.device("meta"):
        return model_class(config)(config)


def run_keys(args: KeysArgs) -> int:
    """Print `key<TAB>shape` for every state-dict entry, shapes as Python tuples (the TSV format)."""
    model = meta_model(args.source)
    print("key\tshape")
    for name, tensor in model.state_dict().items():
        print(f"{name}\t{tuple(tensor.shape)}")
    return 0


def _count(params) -> int:
    return sum(p.numel() for p in params)


def component_counts(model) -> dict[str, int]:
    """Unique parameter counts per component (the tied lm_head counted once, inside the LLM)."""
    eagle, head = model.backbone.vlm, model.action_head
    vision = eagle.vision_model.vision_model
    pooling = _count(vision.head.parameters()) if vision.head is not None else 0
    counts = {"backbone.vision (SigLIP)": _count(vision.parameters()) - pooling,
              "backbone.vision pooling head (unused)": pooling}
    modules = {
        "backbone.mlp1": eagle.mlp1,
        "backbone.llm (Qwen3, truncated)": eagle.language_model,
        "action_head.model (DiT)": head.model,
        "action_head.vl_self_attention": head.vl_self_attention,
        "action_head.vlln": head.vlln,
        "action_head.state_encoder": head.state_encoder,
        "action_head.action_encoder": head.action_encoder,
        "action_head.action_decoder": head.action_decoder,
        "action_head.future_tokens": head.future_tokens,
        "action_head.position_embedding": getattr(head, "position_embedding", None),
    }
    counts.update({name: _count(module.parameters()) for name, module in modules.items()
                   if module is not None and any(True for _ in module.parameters())})
    if head.mask_token is not None:
        counts["action_head.mask_token (state dropout)"] = head.mask_token.numel()
    return counts


def model_info(source: str) -> dict:
    """Parameter counts, trainable count under the default fine-tune flags, bf16 size on disk."""
    from pathlib import Path

    model = meta_model(source)
    total = sum(p.numel() for p in model.parameters())
    model.set_trainable(tune_llm=False, tune_visual=False, tune_projector=True, tune_diffusion_model=True)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    info = {
        "source": source,
        "preset": model.config.preset,
        "components": component_counts(model),
        "total_parameters": total,
        "trainable_default_finetune": trainable,
        "bf16_bytes": 2 * total,
    }
    path = Path(source)
    if path.is_dir():
        info["safetensors_bytes_on_disk"] = sum(f.stat().st_size for f in path.glob("*.safetensors"))
    return info


def _human(n: float, unit: str = "") -> str:
    for suffix in ("", "K", "M", "G"):
        if abs(n) < 1000:
            return f"{n:.1f} {suffix}{unit}".strip() if suffix else f"{n:.0f} {unit}".strip()
        n /= 1000
    return f"{n:.1f} T{unit}"


def run_info(args: InfoArgs) -> int:
    import json

    info = model_info(args.source)
    if args.format == "json":
        print(json.dumps(info, indent=2))
        return 0
    width = max(len(k) for k in info["components"]) + 2
    print(f"model: {info['preset']} ({info['source']})")
    rows = {**info["components"], "total (unique parameters)": info["total_parameters"],
            "trainable under default fine-tune flags": info["trainable_default_finetune"]}
    for name, count in rows.items():
        print(f"  {name:<{width}}{count:>15,}  ({_human(count)})")
    print(f"  bf16 size on disk: {_human(info['bf16_bytes'], 'B')}")
    if "safetensors_bytes_on_disk" in info:
        print(f"  safetensors files on disk: {_human(info['safetensors_bytes_on_disk'], 'B')}")
    return 0


def register(subparsers) -> None:
    group = add_group(subparsers, "model",
                      "Inspect GR00T N1.5 / N1.6 models: parameter names, shapes and sizes.")
    add_command(group, "keys", KeysArgs, run_keys,
                "Print every state-dict key and its shape (key<TAB>shape), built on the meta device.")
    add_command(group, "info", InfoArgs, run_info,
                "Parameter counts per component, trainable count under the default fine-tune flags "
                "(tune_projector + tune_diffusion_model), and the bf16 checkpoint size.")
