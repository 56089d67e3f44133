"""Stop fine-tuning at the first non-finite loss or gradient norm, naming the step and the episodes of
its batch.

The check must not add a host synchronisation per step (the trainer keeps the GPU's queue full and
reads device values only when it logs). So each step only queues a few elementwise ops that keep, on
the device, the first bad step and its values; the record is read where the trainer synchronises
anyway: when it logs a window's metrics (every `logging_steps`) and before it writes a checkpoint. A
run therefore stops at most `logging_steps` steps after the bad one, and never writes a checkpoint
after it.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import torch
import torch.distributed as dist

from groot.errors import NonFiniteError

NO_STEP = 2**62  # the record's value while every step so far was finite


class NonFiniteWatch:
    """Device-side record of the first optimizer step whose loss or pre-clip gradient norm is NaN / inf,
    plus where each unchecked step's micro-batches came from (host side)."""

    def __init__(self, device: torch.device):
        self.first_step = torch.full((), NO_STEP, dtype=torch.int64, device=device)
        self.values = torch.zeros(2, device=device)  # (loss, grad norm) of first_step
        self.positions: dict[int, list[tuple[int, int]]] = {}  # step -> [(epoch, batch in epoch)]

    def record(self, step: int, loss: torch.Tensor, grad_norm: torch.Tensor,
               positions: list[tuple[int, int]]) -> None:
        """Note step `step` (device scalars `loss`, `grad_norm`); queues device ops, never waits."""
        values = torch.stack([_local(loss).detach().float(), _local(grad_norm).detach().float()])
        first = (self.first_step == NO_STEP) & ~torch.isfinite(values).all()
        self.first_step = torch.where(first, step, self.first_step)
        self.values = torch.where(first, values, self.values)
        self.positions[step] = positions

    def check(self, describe_batch: Callable[[int, int], str], distributed: bool = False) -> None:
        """Raise NonFiniteError if any recorded step (of any process) was not finite; else forget the
        recorded positions. `describe_batch(epoch, batch)` names the episodes of one micro-batch."""
        first = self.first_step.clone()
        if distributed:
            dist.all_reduce(first, op=dist.ReduceOp.MIN)
        step = int(first)
        if step == NO_STEP:
            self.positions.clear()
            return
        if step == int(self.first_step):
            loss, grad_norm = self.values.tolist()
            found = f"loss {loss}, gradient norm {grad_norm}"
        else:
            found = "a non-finite loss or gradient norm in another process"
        batches = "; ".join(describe_batch(*position) for position in self.positions.get(step, []))
        raise NonFiniteError(f"training step {step}: expected a finite loss and gradient norm, "
                             f"found {found}; its batch held {batches or 'unknown episodes'}; no checkpoint "
                             "was written after it (lower --learning-rate or check the data with "
                             "`groot data validate`)")


def _local(value: torch.Tensor) -> torch.Tensor:
    """A plain tensor: under FSDP the gradient norm is a DTensor (its full value, same on every rank)."""
    return value.full_tensor() if hasattr(value, "full_tensor") else value


def describe_batch_episodes(dataset: Any, keys: Any, batch_size: int) -> str:
    """'episode(s) 0, 4 of <path>' for the first `batch_size` sampler `keys` ((index, seed) pairs) of a
    GrootDataset or MixtureDataset (whose epoch must be set to the batch's)."""
    episodes: dict[str, set[int]] = {}
    for index, _ in itertools.islice(keys, batch_size):
        if hasattr(dataset, "sample_location"):
            which, episode, _ = dataset.sample_location(index)
            path = dataset.datasets[which].path
        else:
            (episode, _), path = dataset.locate(index), dataset.path
        episodes.setdefault(str(path), set()).add(episode)
    return "; ".join(f"episode(s) {', '.join(map(str, sorted(found)))} of {path}"
                     for path, found in episodes.items())
