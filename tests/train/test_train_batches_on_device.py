"""`batches_on_device`: every batch arrives whole and in order, embodiment ids stay on the host, and on
CUDA the next batch's copy is already issued (on a side stream) when the current one is handed out."""

from __future__ import annotations

import pytest
import torch

from groot.model.batch import Batch
from groot.train.data import batches_on_device


def _host_batches(count: int, pin: bool) -> list[Batch]:
    batches = []
    for index in range(count):
        pixels = torch.full((2, 3, 512, 512), float(index))  # large enough that copies take a while
        ids = torch.ones((2, 4), dtype=torch.int64)
        batch = Batch(pixels, ids, torch.ones_like(ids), torch.full((2,), 31))
        batches.append(batch.pin_memory() if pin else batch)
    return batches


def _check(device: torch.device, pin: bool) -> None:
    host = _host_batches(4, pin)
    handed_out = []
    for batch in batches_on_device(iter(host), device):
        # what the training step does with it: device work on the current stream, no waiting
        handed_out.append((batch.pixel_values * 2).sum())
        assert batch.pixel_values.device.type == device.type
        assert batch.embodiment_id.device.type == "cpu"
    assert [value.item() for value in handed_out] == [2.0 * b.pixel_values.sum().item() for b in host]


def test_cpu_batches_pass_through_in_order():
    _check(torch.device("cpu"), pin=False)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_batches_arrive_whole_after_side_stream_copies():
    _check(torch.device("cuda"), pin=True)
