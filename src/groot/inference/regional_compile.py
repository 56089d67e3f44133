"""Regional compilation: each kind of repeated transformer block is compiled once, for all its instances.

Compiling a whole stage traces every layer of it into one graph (27 SigLIP + 12 Qwen3 layers, or 4
denoising steps x 16 DiT blocks), so compile time grows with depth. The blocks of one kind run the same
code on parameters of the same shapes: dynamo (torch >= 2.5 inlines nn.Modules and lifts their
parameters to graph inputs) compiles one graph per kind and every instance reuses it.

Kinds: SigLIP encoder layers, Qwen3 decoder layers, the DiT's cross- and self-attention blocks and the VL
self-attention blocks. The three last ones are all `BasicTransformerBlock`s; each kind still gets a code
object of its own (`_region`), because dynamo keeps compiled code, recompile counts and the shape history
of automatic dynamic shapes per code object: a shared one would make the DiT blocks dynamic from their
first compile on, having seen the VL blocks' shapes.

Shapes (`dynamic=None`): the first one a kind sees is compiled static; a new one recompiles with the
sizes that changed made dynamic (sizes 0 and 1 stay specialised, and the Qwen3 layers compile apart
with and without a padding mask). Over batch buckets 1-8, many prompt lengths, masked and unmasked LLM
calls, a kind took at most 6 compilations (tiny preset, CPU): under dynamo's default limit of 8 per code
object, which is therefore left as it is.

Inside `with regional.applied():` every listed block's `forward` is the compiled function of its kind;
on exit the instance attributes are deleted and the blocks run their own eager `forward` again (the
model object stays the un-compiled reference; nothing else of it changes).
"""

from __future__ import annotations

import types
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
from torch import nn

from groot.model.dit import DiT, SelfAttentionTransformer
from groot.model.qwen3 import Qwen3DecoderLayer
from groot.model.siglip import SiglipEncoderLayer


def repeated_blocks(model: nn.Module) -> dict[str, list[nn.Module]]:
    """kind -> the model's blocks of that kind (kinds without blocks left out)."""
    blocks: dict[str, list[nn.Module]] = defaultdict(list)
    for module in model.modules():
        if isinstance(module, SiglipEncoderLayer):
            blocks["siglip_layer"].append(module)
        elif isinstance(module, Qwen3DecoderLayer):
            blocks["qwen3_layer"].append(module)
        elif isinstance(module, DiT):
            for i, block in enumerate(module.transformer_blocks):
                blocks["dit_cross_block" if i in module.cross_block_ids else "dit_self_block"].append(block)
        elif isinstance(module, SelfAttentionTransformer):
            blocks["vl_block"] += module.transformer_blocks
    return dict(blocks)


def _forward(block: nn.Module, *args, **kwargs):
    return type(block).forward(block, *args, **kwargs)


def _region(kind: str) -> Callable:
    """`_forward` under a code object of its own, named after the kind."""
    return types.FunctionType(_forward.__code__.replace(co_name=kind), _forward.__globals__, kind)


# One code object per kind for the whole process: a later `RegionalCompile` with the same backend (another
# engine over the model) reuses what an earlier one compiled.
REGIONS = {kind: _region(kind) for kind in
           ("siglip_layer", "qwen3_layer", "dit_cross_block", "dit_self_block", "vl_block")}


class RegionalCompile:
    def __init__(self, blocks: dict[str, list[nn.Module]], backend: str | Callable = "inductor"):
        """blocks: kind (a key of REGIONS) -> its instances; backend: torch.compile's backend."""
        self.blocks = blocks
        self.compiled = {kind: torch.compile(REGIONS[kind], backend=backend, dynamic=None) for kind in blocks}

    @classmethod
    def for_model(cls, model: nn.Module, backend: str | Callable = "inductor") -> RegionalCompile:
        return cls(repeated_blocks(model), backend)

    @contextmanager
    def applied(self) -> Iterator[None]:
        """Every listed block runs its kind's compiled forward; the eager forward is back on exit."""
        for kind, blocks in self.blocks.items():
            for block in blocks:
                block.forward = types.MethodType(self.compiled[kind], block)
        try:
            yield
        finally:
            for blocks in self.blocks.values():
                for block in blocks:
                    del block.forward
