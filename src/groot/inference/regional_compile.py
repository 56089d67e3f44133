"""Regional compilation: each kind of repeated transformer block is compiled once, for all its instances.

Kinds are block classes (`SiglipEncoderLayer`, `Qwen3DecoderLayer`, `DiTCrossAttentionBlock`,
`DiTSelfAttentionBlock`, `VLSelfAttentionBlock`); dynamo keeps compiled code and shape history per
class's `forward`, so every instance of a kind, and a later engine with the same backend, reuses it.
A kind's first input shape compiles static, a new one recompiles with the changed sizes dynamic
(dynamo's default limit of 8 compilations per code object is kept). `compile_blocks(model)` gives the
blocks of the engine's private copy their kind's compiled forward; the user's model stays eager.
"""

from __future__ import annotations

import types
from collections import defaultdict
from collections.abc import Callable

import torch
from torch import nn

from groot.model.dit import DiTCrossAttentionBlock, DiTSelfAttentionBlock, VLSelfAttentionBlock
from groot.model.qwen3 import Qwen3DecoderLayer
from groot.model.siglip import SiglipEncoderLayer

KINDS = (SiglipEncoderLayer, Qwen3DecoderLayer, DiTCrossAttentionBlock, DiTSelfAttentionBlock,
         VLSelfAttentionBlock)


def repeated_blocks(model: nn.Module) -> dict[type[nn.Module], list[nn.Module]]:
    """kind (block class) -> the model's blocks of that kind (kinds without blocks left out)."""
    blocks: dict[type[nn.Module], list[nn.Module]] = defaultdict(list)
    for module in model.modules():
        if type(module) in KINDS:
            blocks[type(module)].append(module)
    return dict(blocks)


def compile_blocks(model: nn.Module,
                   backend: str | Callable = "inductor") -> dict[type[nn.Module], list[nn.Module]]:
    """Every repeated block of `model` runs its class's forward through `torch.compile(backend)`.
    Returns the blocks per kind."""
    blocks = repeated_blocks(model)
    for kind, instances in blocks.items():
        compiled = torch.compile(kind.forward, backend=backend, dynamic=None)
        for block in instances:
            block.forward = types.MethodType(compiled, block)
    return blocks
