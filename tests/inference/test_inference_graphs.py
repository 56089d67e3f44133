"""CapturedStage: eager fallback without CUDA; capture + replay equals eager on a GPU."""

from __future__ import annotations

import pytest
import torch

from groot.inference.cuda_graphs import CapturedStage, graph_pool


def test_cpu_stage_runs_the_closure_every_call():
    buffer = torch.zeros(3)
    runs = []

    def closure():
        runs.append(1)
        return buffer * 2 + 1

    stage = CapturedStage(closure, torch.device("cpu"), use_graph=True)
    for value in (1.0, 5.0):
        buffer.fill_(value)
        assert torch.equal(stage(), torch.full((3,), 2 * value + 1))
    assert stage.graph is None and len(runs) == 2
    assert graph_pool(torch.device("cpu"), use_graphs=True) is None


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_graph_replay_follows_new_static_inputs_and_runs_the_closure_only_to_capture():
    device = torch.device("cuda")
    x = torch.randn(64, 128, device=device)
    weight = torch.randn(128, 128, device=device)
    runs = []

    def closure():
        runs.append(1)
        return torch.nn.functional.gelu(x @ weight).sum(-1)

    stage = CapturedStage(closure, device, use_graph=True, pool=graph_pool(device, True), warmup_iters=2)
    for _ in range(3):
        x.copy_(torch.randn_like(x))
        out = stage()
        torch.testing.assert_close(out, torch.nn.functional.gelu(x @ weight).sum(-1))
    assert stage.graph is not None and len(runs) == 3  # two warm-up runs and the capture
