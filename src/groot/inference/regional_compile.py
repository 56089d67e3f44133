"""Regional compilation: each kind of repeated transformer block is compiled once, for all its instances.

Compiling a whole stage traces every layer of it into one graph (27 SigLIP + 12 Qwen3 layers, or 4
denoising steps x 16 DiT blocks), so compile time grows with depth. The blocks of one kind run the same
code on parameters of the same shapes: dynamo (torch >= 2.5 inlines nn.Modules and lifts their
parameters to graph inputs) compiles one graph per kind and every instance reuses it.

Kinds are block classes: `SiglipEncoderLayer`, `Qwen3DecoderLayer`, `DiTCrossAttentionBlock`,
`DiTSelfAttentionBlock`, `VLSelfAttentionBlock`. Dynamo keeps compiled code, recompile counts and the
shape history of automatic dynamic shapes per code object, i.e. per class's `forward`: each kind's
shapes stay its own, and a later engine with the same backend reuses what an earlier one compiled.

Shapes (`dynamic=None`): the first one a kind sees is compiled static; a new one recompiles with the
sizes that changed made dynamic (sizes 0 and 1 stay specialised, and the Qwen3 layers compile apart
with and without a padding mask). Over batch buckets 1-8, many prompt lengths, masked and unmasked LLM
calls, a kind took at most 6 compilations (tiny preset, CPU): under dynamo's default limit of 8 per code
object, which is therefore left as it is.

`compile_blocks(model)` gives every block of a model the engine owns (its private copy) its kind's
compiled forward; the user's model keeps its eager blocks.
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
