"""Train only the embodiment rows of the per-embodiment tables that the data actually uses.

`EmbodimentSlices` swaps each trainable `CategorySpecificLinear` table (`W [C=32, in, out]`, `b [C, out]`)
for a parameter holding just the used rows (`W [k, in, out]`), keeps the full tables on the CPU, and
remaps the embodiment ids a table receives to rows of the slice (a forward pre-hook). The used rows learn
exactly what they would in the full table; unused rows stay bit-identical (the full-table run would only
shrink them by AdamW's decoupled weight decay). `full_state_dict(state)` writes the slices back into a
full state dict of the model, for saving a normal checkpoint.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import nn


@dataclass
class _Table:
    name: str  # qualified module name in the model
    module: nn.Module
    full: dict[str, torch.Tensor]  # "W" [C, in, out], "b" [C, out]: CPU copies of the whole tables
    slot_of_id: torch.Tensor  # int64 [C]: row in the slice, or k (out of range) for unused ids
    slot_cache: dict[torch.device, torch.Tensor] = field(default_factory=dict)
    hook: object = None


def is_embodiment_table(module: nn.Module) -> bool:
    """A module with its own `W [C, in, out]` and `b [C, out]` parameters (CategorySpecificLinear)."""
    params = dict(module.named_parameters(recurse=False))
    weight, bias = params.get("W"), params.get("b")
    return (weight is not None and bias is not None and weight.dim() == 3 and bias.dim() == 2
            and weight.shape[0] == bias.shape[0])


class EmbodimentSlices:
    """Replace every trainable embodiment table of `model` by the rows of `embodiment_ids`."""

    def __init__(self, model: nn.Module, embodiment_ids: Sequence[int]):
        self.embodiment_ids = sorted(set(int(i) for i in embodiment_ids))
        if not self.embodiment_ids:
            raise ValueError("EmbodimentSlices: no embodiment ids given")
        self._tables: list[_Table] = []
        for name, module in model.named_modules():
            if is_embodiment_table(module) and module.W.requires_grad:
                self._tables.append(self._slice(name, module))

    @property
    def num_tables(self) -> int:
        return len(self._tables)

    def _slice(self, name: str, module: nn.Module) -> _Table:
        num_categories = module.W.shape[0]
        bad = [i for i in self.embodiment_ids if not 0 <= i < num_categories]
        if bad:
            raise ValueError(f"embodiment ids {bad} out of range for a table with {num_categories} rows")
        rows = torch.tensor(self.embodiment_ids, dtype=torch.long)
        slot_of_id = torch.full((num_categories,), len(rows), dtype=torch.long)
        slot_of_id[rows] = torch.arange(len(rows))
        full = {}
        for key in ("W", "b"):
            param = getattr(module, key)
            full[key] = param.detach().to("cpu", copy=True)
            setattr(module, key, nn.Parameter(param.detach()[rows.to(param.device)].clone()))
        table = _Table(name=name, module=module, full=full, slot_of_id=slot_of_id)
        table.hook = module.register_forward_pre_hook(
            lambda _module, args, kwargs: self._remap_ids(table, args, kwargs), with_kwargs=True)
        return table

    def _remap_ids(self, table: _Table, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        """Replace the embodiment argument (an int, or the only integer tensor [B]) by slice rows."""
        def remap(value):
            if isinstance(value, int) and not isinstance(value, bool):
                if value not in self.embodiment_ids:
                    raise ValueError(f"embodiment id {value} is not among the trained ids "
                                     f"{self.embodiment_ids}")
                return self.embodiment_ids.index(value)
            if isinstance(value, torch.Tensor) and not value.is_floating_point():
                slots = table.slot_cache.get(value.device)
                if slots is None:
                    slots = table.slot_of_id.to(value.device)
                    table.slot_cache[value.device] = slots
                return slots[value]  # unused ids map past the end: indexing the slice fails loudly
            return value
        return tuple(remap(a) for a in args), {k: remap(v) for k, v in kwargs.items()}

    def _write_back(self) -> None:
        """Copy the trained rows into the CPU full tables."""
        rows = torch.tensor(self.embodiment_ids, dtype=torch.long)
        for table in self._tables:
            for name, full in table.full.items():
                trained = getattr(table.module, name).detach().to("cpu", full.dtype)
                full[rows] = trained

    def full_state_dict(self, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """A copy of the model's `state` whose tables are whole again (trained rows written back): the
        state dict of the unsliced model, e.g. for `save_state_dict`. Full tables are CPU tensors."""
        self._write_back()
        full_state = dict(state)
        for table in self._tables:
            for key, full in table.full.items():
                name = f"{table.name}.{key}" if table.name else key
                if name not in full_state:
                    raise KeyError(f"embodiment table {name!r}: expected in the state dict, found no key")
                full_state[name] = full
        return full_state
