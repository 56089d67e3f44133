"""CUDA-graph capture of a whole stage (backbone, denoising loop) with eager fallback.

A `CapturedStage` wraps a closure that reads only static input buffers and returns tensors. On first
use it warms the closure up on a side stream (cuBLAS handles, kernel selection, allocator growth),
captures it into a `torch.cuda.CUDAGraph` drawing from a memory pool shared by all stages of one
engine, and replays the graph from then on; the returned tensors are the graph's static outputs,
overwritten by the next replay. Without CUDA (or with graphs disabled) it simply calls the closure, so
the CPU path runs exactly the same code.

Rules for a captured closure: no host synchronisation (`.item()`, `.cpu()`, `bool(tensor)`), no
branching on tensor values, no new input tensors (read the static buffers), and the same kernels on
every call. Stages sharing one pool must never run concurrently (one engine = one stream).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

import torch

Outputs = TypeVar("Outputs")


def graph_pool(device: torch.device, use_graphs: bool) -> tuple | None:
    """A memory-pool handle for the stages of one engine (None without CUDA graphs)."""
    return torch.cuda.graph_pool_handle() if use_graphs and device.type == "cuda" else None


class CapturedStage(Generic[Outputs]):
    def __init__(self, fn: Callable[[], Outputs], device: torch.device, use_graph: bool,
                 pool: tuple | None = None, warmup_iters: int = 2):
        self.fn = fn
        self.use_graph = use_graph and device.type == "cuda"
        self.pool = pool
        self.warmup_iters = warmup_iters
        self.graph: torch.cuda.CUDAGraph | None = None
        self.outputs: Outputs | None = None

    def __call__(self) -> Outputs:
        if not self.use_graph:
            return self.fn()
        if self.graph is None:
            self._capture()
        self.graph.replay()
        return self.outputs

    def _capture(self) -> None:
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(self.warmup_iters):
                self.fn()
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=self.pool):
            self.outputs = self.fn()
        self.graph = graph
