"""Regional compilation (tiny preset, fp32, CPU, inductor): one compilation per kind of repeated block,
the eager model's numbers within fp32 rounding, the caller's model left eager."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from inference_samples import eager_actions, make_sample

from groot.inference import InferenceEngine
from groot.model.dit import DiTSelfAttentionBlock

ATOL = 1e-4


@pytest.mark.slow  # over 30 s on a 2-core CPU
def test_compiled_blocks_match_eager_compile_once_per_kind_and_leave_the_model_eager(tiny_model,
                                                                                      tiny_processor):
    torch._dynamo.reset()
    inductor = torch._dynamo.lookup_backend("inductor")
    graph_inputs = []

    def recording_inductor(graph, example_inputs):
        graph_inputs.append(example_inputs)
        return inductor(graph, example_inputs)

    rng = np.random.default_rng(0)
    samples = [make_sample(rng, "wipe the table"), make_sample(rng, "wipe")]
    noise = torch.randn(2, 16, 32)
    engine = InferenceEngine(tiny_model, tiny_processor, exact=False, compile=True,
                             compile_backend=recording_inductor)
    fast = engine.predict(samples, noise=noise)
    torch.testing.assert_close(fast, eager_actions(tiny_model, tiny_processor, samples, noise), atol=ATOL,
                               rtol=0)

    # 5 kinds, 9 blocks (the DiT's run once per denoising step): one static graph per kind
    blocks = engine.compiled_blocks
    assert len(blocks) == 5 and sum(map(len, blocks.values())) == 9
    assert len(graph_inputs) == len(blocks)
    assert not any(isinstance(x, torch.SymInt) for inputs in graph_inputs for x in inputs)

    # the caller's model runs its classes' forwards: eager calls of new shapes compile nothing
    assert all("forward" in vars(block) for kind in blocks.values() for block in kind)
    assert not any("forward" in vars(module) for module in tiny_model.modules())
    eager_actions(tiny_model, tiny_processor, samples[:1], noise[:1])
    assert len(graph_inputs) == len(blocks)

    # the parameters are graph inputs: changed weights are followed after `reset()`, with no recompile
    weight = blocks[DiTSelfAttentionBlock][0].ff.net[2].weight  # shared with the caller's model
    with torch.no_grad():
        weight.mul_(2)
    try:
        engine.reset()
        changed = engine.predict(samples, noise=noise)
        assert (changed - fast).abs().max() > 1e-3
        torch.testing.assert_close(changed, eager_actions(tiny_model, tiny_processor, samples, noise),
                                   atol=ATOL, rtol=0)
    finally:
        with torch.no_grad():
            weight.div_(2)
    assert len(graph_inputs) == len(blocks)
