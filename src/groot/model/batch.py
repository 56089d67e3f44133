"""`Batch`: the model's input, as `GrootProcessor` returns it and `GR00TN15` reads it.

`Batch.to(device)` owns the host/device rule: every tensor moves except `embodiment_id`, which stays on
the host (the action head reads it with `.item()` to see whether the batch holds one embodiment; on the
device that read would wait for the queue). `Batch` is a torch pytree node whose children are its fields
in declaration order, so pytree walks (the CUDA-graphed step) see its tensors as leaves.
"""

from __future__ import annotations

import dataclasses

import torch
from torch.utils import _pytree as pytree


@dataclasses.dataclass(frozen=True)
class Batch:
    """One batch of B samples; change a field with `dataclasses.replace`."""

    pixel_values: torch.Tensor  # float [N_img, 3, S, S] in [-1, 1]: every sample's images, in sample order
    input_ids: torch.Tensor  # int64 [B, L]: prompts, left-padded
    attention_mask: torch.Tensor  # int64 [B, L]: 1 = prompt token, 0 = padding
    embodiment_id: torch.Tensor  # int64 [B], always on the host
    state: torch.Tensor | None = None  # float32 [B, 1, 64]
    state_mask: torch.Tensor | None = None  # bool [B, 1, 64]
    action: torch.Tensor | None = None  # float32 [B, 16, 32]: training batches only
    action_mask: torch.Tensor | None = None  # bool [B, 16, 32]: training batches only
    inputs_embeds: torch.Tensor | None = None  # [B, L, D]: input_ids' token-table rows (HostTokenEmbedding)

    def to(self, device: torch.device | str, non_blocking: bool = False) -> Batch:
        """Every tensor on `device` except `embodiment_id`, which stays on the host."""
        return dataclasses.replace(self, **{
            field.name: value.to(device, non_blocking=non_blocking)
            for field, value in _tensor_fields(self) if field.name != "embodiment_id"})

    def pin_memory(self) -> Batch:
        """Every tensor in page-locked host memory (called by the DataLoader's pin-memory thread)."""
        return dataclasses.replace(self, **{field.name: value.pin_memory()
                                            for field, value in _tensor_fields(self)})


_FIELDS = tuple(field.name for field in dataclasses.fields(Batch))


def _tensor_fields(batch: Batch) -> list[tuple[dataclasses.Field, torch.Tensor]]:
    return [(field, getattr(batch, field.name)) for field in dataclasses.fields(batch)
            if getattr(batch, field.name) is not None]


def _flatten(batch: Batch) -> tuple[list, None]:
    return [getattr(batch, name) for name in _FIELDS], None


def _flatten_with_keys(batch: Batch) -> tuple[list, None]:
    return [(pytree.GetAttrKey(name), getattr(batch, name)) for name in _FIELDS], None


def _unflatten(values, context: None) -> Batch:
    return Batch(*values)


pytree.register_pytree_node(Batch, _flatten, _unflatten, serialized_type_name=f"{__name__}.Batch",
                            flatten_with_keys_fn=_flatten_with_keys)
