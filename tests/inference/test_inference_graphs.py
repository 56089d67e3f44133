"""Stage cache: eager fallback without CUDA; capture + replay equals eager on a GPU."""

from __future__ import annotations

import pytest
import torch

from groot.inference.cuda_graphs import StageCache


def test_cpu_stage_cache_runs_the_closure_every_call():
    cache = StageCache(torch.device("cpu"), use_graphs=True)
    buffer = torch.zeros(3)
    builds = []

    def build():
        builds.append(1)
        return lambda: buffer * 2 + 1

    for value in (1.0, 5.0):
        buffer.fill_(value)
        assert torch.equal(cache.get(("k", 3), build)(), torch.full((3,), 2 * value + 1))
    assert len(builds) == 1 and len(cache) == 1 and cache.captured == 0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_graph_replay_follows_new_static_inputs():
    device = torch.device("cuda")
    cache = StageCache(device, use_graphs=True)
    x = torch.randn(64, 128, device=device)
    weight = torch.randn(128, 128, device=device)

    def build():
        return lambda: torch.nn.functional.gelu(x @ weight).sum(-1)

    stage = cache.get("mlp", build)
    for _ in range(3):
        x.copy_(torch.randn_like(x))
        out = stage()
        torch.testing.assert_close(out, torch.nn.functional.gelu(x @ weight).sum(-1))
    assert cache.captured == 1
