"""`Batch`: `.to` moves every tensor but the embodiment ids, the pytree view is the fields in declaration
order (None fields included), and the graphed step's layout keys host embodiment ids by value."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch.utils import _pytree as pytree

from groot.model.batch import Batch
from groot.model.config import preset_config
from groot.model.synthetic_batch import synthetic_batch
from groot.train.cuda_graph_step import batch_layout


def _batch(**fields) -> Batch:
    return dataclasses.replace(synthetic_batch(preset_config("tiny"), batch=2, text_tokens=2), **fields)


def test_to_moves_every_tensor_but_the_embodiment_ids():
    batch = _batch(inputs_embeds=torch.zeros(2, 3, 4))
    moved = batch.to("meta")
    for field in dataclasses.fields(Batch):
        expected = "cpu" if field.name == "embodiment_id" else "meta"
        assert getattr(moved, field.name).device.type == expected, field.name
    assert moved.embodiment_id is batch.embodiment_id


def test_to_keeps_absent_fields_absent():
    moved = _batch(action=None, action_mask=None).to("meta")
    assert moved.action is None and moved.action_mask is None and moved.inputs_embeds is None
    assert moved.state.device.type == "meta"


def test_pytree_children_are_the_fields_in_declaration_order():
    batch = _batch()
    leaves, spec = pytree.tree_flatten([(batch, None)])
    names = [field.name for field in dataclasses.fields(Batch)]
    assert leaves[-1] is None  # the tuple's second element
    assert all(leaf is getattr(batch, name) for leaf, name in zip(leaves[:-1], names, strict=True))
    rebuilt = pytree.tree_unflatten(leaves, spec)[0][0]
    assert isinstance(rebuilt, Batch)
    assert all(getattr(rebuilt, name) is getattr(batch, name) for name in names)
    paths = [path for path, _ in pytree.tree_flatten_with_path(batch)[0]]
    assert [path[0].name for path in paths] == names


def test_layout_tells_embodiments_and_present_fields_apart():
    batch = _batch()
    assert batch_layout([batch]) == batch_layout([_batch()])
    assert batch_layout([batch]) != batch_layout([_batch(embodiment_id=torch.tensor([5, 31]))])
    assert batch_layout([batch]) != batch_layout([_batch(inputs_embeds=torch.zeros(2, 3, 4))])


def test_batch_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        _batch().action = None


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (page-locked memory)")
def test_data_loader_pin_memory_pins_every_tensor():
    from torch.utils.data._utils.pin_memory import pin_memory

    pinned = pin_memory(_batch())
    assert isinstance(pinned, Batch)
    assert all(getattr(pinned, f.name).is_pinned() for f in dataclasses.fields(Batch)
               if getattr(pinned, f.name) is not None)
