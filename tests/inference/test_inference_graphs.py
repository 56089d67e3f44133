"""CapturedStage: eager fallback without CUDA; capture + replay equals eager on a GPU."""

from __future__ import annotations

from contextlib import contextmanager

import pytest
import torch

from groot.inference.cuda_graphs import CapturedStage, graph_pool


def test_cpu_stage_runs_the_closure_every_call_inside_its_trace_context():
    buffer = torch.zeros(3)
    entered = []

    @contextmanager
    def trace():
        entered.append(1)
        yield

    stage = CapturedStage(lambda: buffer * 2 + 1, torch.device("cpu"), use_graph=True, trace_context=trace)
    for value in (1.0, 5.0):
        buffer.fill_(value)
        assert torch.equal(stage(), torch.full((3,), 2 * value + 1))
    assert stage.graph is None and len(entered) == 2
    assert graph_pool(torch.device("cpu"), use_graphs=True) is None


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_graph_replay_follows_new_static_inputs_and_traces_once():
    device = torch.device("cuda")
    x = torch.randn(64, 128, device=device)
    weight = torch.randn(128, 128, device=device)
    entered = []

    @contextmanager
    def trace():
        entered.append(1)
        yield

    stage = CapturedStage(lambda: torch.nn.functional.gelu(x @ weight).sum(-1), device, use_graph=True,
                          pool=graph_pool(device, True), trace_context=trace)
    for _ in range(3):
        x.copy_(torch.randn_like(x))
        out = stage()
        torch.testing.assert_close(out, torch.nn.functional.gelu(x @ weight).sum(-1))
    assert stage.graph is not None and len(entered) == 1
