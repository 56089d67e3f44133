"""LoRA fine-tuning through peft (official recipe, spec 10).

Targets: every nn.Linear whose name contains q_proj / k_proj / v_proj / to_q / to_k / to_v, only under
`action_head` unless `full_model`. Adapters are saved in peft's format (adapter_config.json +
adapter_model.safetensors); `merged_state_dict(state, lora_scalings(model))` folds the adapters into the
base weights of a (possibly FSDP-gathered) state dict, so `save_state_dict` writes an ordinary checkpoint
that needs no peft.
"""

from __future__ import annotations

from pathlib import Path

import torch
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


def save_adapters(model: nn.Module, directory: Path, base_model: str,
                  state: dict[str, torch.Tensor] | None = None) -> None:
    """peft format: adapter_config.json + adapter_model.safetensors (adapter weights only), taken from
    `state` (a full state dict of `model`, e.g. gathered from FSDP shards) or else `model.state_dict()`."""
    from peft import get_peft_model_state_dict
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    config = model.peft_config[ADAPTER_NAME]
    config.base_model_name_or_path = base_model
    config.save_pretrained(str(directory))
    state = get_peft_model_state_dict(model, state_dict=state, adapter_name=ADAPTER_NAME,
                                      save_embedding_layers=False)
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


def lora_scalings(model: nn.Module) -> dict[str, float]:
    """{qualified name of each adapted layer: its scaling alpha / r}."""
    from peft.tuners.lora import LoraLayer

    return {name: float(module.scaling[ADAPTER_NAME]) for name, module in model.named_modules()
            if isinstance(module, LoraLayer)}


def merged_state_dict(state: dict[str, torch.Tensor], scalings: dict[str, float]) -> dict[str, torch.Tensor]:
    """`state` of a model with adapters -> the state dict of the plain model: for every adapted layer
    `<name>.weight = base + scaling * B @ A` (computed in fp32, stored in the base dtype) and
    `<name>.bias = base bias`; the peft keys are gone."""
    merged = dict(state)
    for name, scaling in scalings.items():
        base = merged.pop(f"{name}.base_layer.weight")  # [out, in]
        lora_a = merged.pop(f"{name}.lora_A.{ADAPTER_NAME}.weight").float()  # [r, in]
        lora_b = merged.pop(f"{name}.lora_B.{ADAPTER_NAME}.weight").float()  # [out, r]
        merged[f"{name}.weight"] = (base.float() + scaling * (lora_b @ lora_a)).to(base.dtype)
        bias = merged.pop(f"{name}.base_layer.bias", None)
        if bias is not None:
            merged[f"{name}.bias"] = bias
    return merged
