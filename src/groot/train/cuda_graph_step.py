"""One CUDA graph per batch layout for the whole training step: forward, backward, clip, AdamW.

`GraphedTrainStep` wraps a step function of one argument (any nesting of lists, tuples, dicts and
`Batch`es of tensors and host values) and, per input layout (tensor shapes and dtypes, and the values of
host-side entries such as embodiment ids, which steer Python control flow), runs it directly for `warmup`
steps, records it on the next one and replays it from then on, with the inputs copied into the recorded ones.
The step must not synchronise with the host or draw host-side random numbers (flow-matching times are
drawn beforehand: `step.draw_flow_times`). Learning rates live on the device and are refilled from the
groups' float `lr` before each replay, so schedules and checkpoints see plain floats. CUDA random draws
advance the generator on replay as they would run by run. All recordings share one memory pool.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch.utils import _pytree as pytree

Batches = list[Any]  # the micro-batches of one optimizer step (pytree: lists, tuples, dicts, `Batch`es)
StepFn = Callable[[Batches], tuple[torch.Tensor, torch.Tensor]]  # -> (loss, grad_norm)


def batch_layout(batches: Batches) -> tuple:
    """What must match for a recording to serve a step's inputs: their nesting and keys, device tensors'
    shapes and dtypes, the values of host tensors and of everything else."""
    leaves, spec = pytree.tree_flatten(batches)
    return spec, *(_leaf_layout(leaf) for leaf in leaves)


def _is_device_tensor(value: Any) -> bool:
    return isinstance(value, torch.Tensor) and value.is_cuda


def _leaf_layout(value: Any) -> tuple:
    if _is_device_tensor(value):
        return tuple(value.shape), value.dtype
    if isinstance(value, torch.Tensor):
        return tuple(value.shape), tuple(value.flatten().tolist())
    return (repr(value),)


class _Recording:
    def __init__(self, graph: torch.cuda.CUDAGraph, inputs: Batches, outputs: tuple):
        self.graph, self.inputs, self.outputs = graph, inputs, outputs


class GraphedTrainStep:
    """`step(batches) -> (loss, grad_norm)` with the same results as `step_fn(batches)`; see the module
    docstring. Returned tensors are fresh copies (the recorded outputs are overwritten by the next
    replay)."""

    def __init__(self, step_fn: StepFn, optimizer: torch.optim.Optimizer, warmup: int = 2):
        self.step_fn, self.optimizer, self.warmup = step_fn, optimizer, warmup
        self.recordings: dict[tuple, _Recording] = {}
        self.steps_seen: dict[tuple, int] = {}
        self.pool = torch.cuda.graph_pool_handle()
        self.stream = torch.cuda.Stream()
        self.lrs = [torch.tensor(float(group["lr"]), device=group["params"][0].device)
                    for group in optimizer.param_groups]

    def __call__(self, batches: Batches) -> tuple[torch.Tensor, torch.Tensor]:
        layout = batch_layout(batches)
        recording = self.recordings.get(layout)
        if recording is None:
            seen = self.steps_seen.get(layout, 0)
            self.steps_seen[layout] = seen + 1
            if seen < self.warmup:
                return self._on_side_stream(lambda: self.step_fn(batches))
            recording = self.recordings[layout] = self._record(batches)
        return self._replay(recording, batches)

    def _on_side_stream(self, run: Callable[[], Any]) -> Any:
        """Run on the recording stream, so that lazily created per-stream state (cuBLAS workspaces, ...)
        exists before a recording starts."""
        self.stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(self.stream):
            result = run()
        torch.cuda.current_stream().wait_stream(self.stream)
        return result

    def _record(self, batches: Batches) -> _Recording:
        inputs = pytree.tree_map(lambda value: value.clone() if _is_device_tensor(value) else value, batches)
        groups = self.optimizer.param_groups
        saved = [(group["lr"], group["capturable"]) for group in groups]
        self.optimizer.zero_grad(set_to_none=True)  # gradients are allocated inside the recording
        torch.cuda.synchronize()
        torch.cuda.empty_cache()  # warmup blocks cached on the side stream are of no use to the pool
        graph = torch.cuda.CUDAGraph()
        try:
            for group, lr in zip(groups, self.lrs, strict=True):
                group["lr"], group["capturable"] = lr, True
            # thread_local: the loader's pin-memory thread keeps allocating page-locked buffers while a
            # step is recorded; in the default (global) mode any such call fails the recording
            with torch.cuda.graph(graph, pool=self.pool, stream=self.stream,
                                  capture_error_mode="thread_local"):
                outputs = self.step_fn(inputs)
        finally:
            for group, (lr, capturable) in zip(groups, saved, strict=True):
                group["lr"], group["capturable"] = lr, capturable
        return _Recording(graph, inputs, outputs)

    def _replay(self, recording: _Recording, batches: Batches) -> tuple[torch.Tensor, torch.Tensor]:
        recorded, _ = pytree.tree_flatten(recording.inputs)
        for value, new in zip(recorded, pytree.tree_flatten(batches)[0], strict=True):
            if _is_device_tensor(value):
                value.copy_(new, non_blocking=True)
        for group, lr in zip(self.optimizer.param_groups, self.lrs, strict=True):
            lr.fill_(float(group["lr"]))
        recording.graph.replay()
        return tuple(output.clone() for output in recording.outputs)
