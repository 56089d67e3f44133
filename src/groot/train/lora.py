"""LoRA fine-tuning through peft (official recipe, spec 10).

Targets: every nn.Linear whose name contains q_proj / k_proj / v_proj / to_q / to_k / to_v, only under
`action_head` unless `full_model`. Adapters are saved in peft's format (adapter_config.json +
adapter_model.safetensors); `merged_linears(model)` exposes the model with the adapters folded into
plain nn.Linear layers, so `save_pretrained` writes an ordinary checkpoint that needs no peft.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from torch import nn

from groot.errors import CheckpointError

ATTENTION_PROJECTIONS = ("q_proj", "k_proj", "v_proj", "to_q", "to_k", "to_v")
ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
ADAPTER_NAME = "default"


def lora_target_names(model: nn.Module, full_model: bool) -> list[str]:
    """Full names of the nn.Linear modules that get adapters."""
    names = []
    for name, module in model.named_modules():
        if not isinstance(module, nn.Linear):
            continue
        if not full_model and not name.startswith("action_head."):
            continue
        if any(key in name.rsplit(".", 1)[-1] for key in ATTENTION_PROJECTIONS):
            names.append(name)
    return names


def _lora_config(targets: list[str], rank: int, alpha: int, dropout: float):
    from peft import LoraConfig

    return LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=dropout, bias="none", target_modules=targets)


def apply_lora(model: nn.Module, rank: int, alpha: int, dropout: float, full_model: bool) -> list[str]:
    """Insert adapters in place; afterwards only the adapter weights train. Returns the targets."""
    from peft import inject_adapter_in_model

    targets = lora_target_names(model, full_model)
    if not targets:
        raise ValueError("LoRA: no q/k/v projection found to adapt"
                         + ("" if full_model else " under action_head (try --lora-full-model)"))
    inject_adapter_in_model(_lora_config(targets, rank, alpha, dropout), model, adapter_name=ADAPTER_NAME)
    for name, param in model.named_parameters():
        param.requires_grad_("lora_" in name)
    return targets


def save_adapters(model: nn.Module, directory: Path, base_model: str) -> None:
    """peft format: adapter_config.json + adapter_model.safetensors (adapter weights only)."""
    from peft import get_peft_model_state_dict
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    config = model.peft_config[ADAPTER_NAME]
    config.base_model_name_or_path = base_model
    config.save_pretrained(str(directory))
    state = get_peft_model_state_dict(model, adapter_name=ADAPTER_NAME, save_embedding_layers=False)
    save_file({k: v.detach().cpu().contiguous() for k, v in state.items()}, str(directory / ADAPTER_WEIGHTS))


def load_adapters(model: nn.Module, directory: Path) -> None:
    """Insert the adapters saved in `directory` into `model` (a model of the base weights)."""
    from peft import LoraConfig, inject_adapter_in_model

    config_path = Path(directory) / ADAPTER_CONFIG
    if not config_path.is_file():
        raise CheckpointError(f"{config_path}: missing (not a LoRA adapter directory)")
    inject_adapter_in_model(LoraConfig.from_pretrained(str(directory)), model, adapter_name=ADAPTER_NAME)
    load_adapter_weights(model, directory)


def load_adapter_weights(model: nn.Module, directory: Path) -> None:
    """Copy saved adapter weights into a model that already has the adapters inserted."""
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    weights_path = Path(directory) / ADAPTER_WEIGHTS
    if not weights_path.is_file():
        raise CheckpointError(f"{weights_path}: missing (not a LoRA adapter directory)")
    result = set_peft_model_state_dict(model, load_file(str(weights_path)), adapter_name=ADAPTER_NAME)
    unexpected = getattr(result, "unexpected_keys", [])
    if unexpected:
        raise CheckpointError(f"{weights_path}: keys {unexpected[:5]} match no adapter of the model")


def adapter_base_model(directory: Path) -> str | None:
    return json.loads((Path(directory) / ADAPTER_CONFIG).read_text()).get("base_model_name_or_path")


def _lora_layers(model: nn.Module) -> list[tuple[nn.Module, str, nn.Module]]:
    from peft.tuners.lora import LoraLayer

    found = []
    for name, module in model.named_modules():
        if isinstance(module, LoraLayer):
            parent_name, _, child = name.rpartition(".")
            found.append((model.get_submodule(parent_name) if parent_name else model, child, module))
    return found


def _merged_linear(layer: nn.Module) -> nn.Linear:
    base = layer.get_base_layer()
    merged = nn.Linear(base.in_features, base.out_features, bias=base.bias is not None,
                       device=base.weight.device, dtype=base.weight.dtype)
    delta = layer.get_delta_weight(ADAPTER_NAME).to(base.weight.dtype)
    merged.weight.data.copy_(base.weight.detach() + delta.detach())
    if base.bias is not None:
        merged.bias.data.copy_(base.bias.detach())
    merged.requires_grad_(False)
    return merged


@contextmanager
def merged_linears(model: nn.Module) -> Iterator[nn.Module]:
    """Within the block every LoRA layer is replaced by a plain nn.Linear holding W + (alpha/r)·B·A,
    so the model has its original parameter names; the adapters come back afterwards."""
    layers = _lora_layers(model)
    for parent, child, layer in layers:
        setattr(parent, child, _merged_linear(layer))
    try:
        yield model
    finally:
        for parent, child, layer in layers:
            setattr(parent, child, layer)


def merge_in_place(model: nn.Module) -> nn.Module:
    """Fold the adapters into the weights for good (inference after LoRA training)."""
    for parent, child, layer in _lora_layers(model):
        setattr(parent, child, _merged_linear(layer))
    model.__dict__.pop("peft_config", None)
    return model
