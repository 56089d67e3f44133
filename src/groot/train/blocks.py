"""The model's repeated blocks: the units of activation checkpointing and of FSDP sharding."""

from __future__ import annotations

from torch import nn


def outermost_blocks(model: nn.Module, trainable_only: bool) -> list[tuple[str, nn.Module]]:
    """(name, block) for every element of an nn.ModuleList (with trainable parameters, if
    `trainable_only`) that does not sit inside another such block (a transformer layer, not its
    attention's `to_out` list)."""
    blocks: list[tuple[str, nn.Module]] = []
    for name, module in model.named_modules():
        if not isinstance(module, nn.ModuleList) or any(name.startswith(f"{b}.") for b, _ in blocks):
            continue
        for index, block in enumerate(module):
            if not trainable_only or any(p.requires_grad for p in block.parameters()):
                blocks.append((f"{name}.{index}" if name else str(index), block))
    return blocks
