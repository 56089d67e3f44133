"""On a GPU, under the bf16 autocast `groot rl` samples and updates with (float32 weights): the
log-probability the learner recomputes for a stored chain, in micro-batches, equals the rollout's, so
the first PPO ratio of an iteration is 1 up to bf16 rounding, for both generations and at the 3B scale."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from groot.model.batch import Batch
from groot.model.config import preset_config
from groot.model.gr00t_n16 import model_class
from groot.model.synthetic_batch import synthetic_batch
from groot.rl.actor import ActorCritic, SamplerConfig
from groot.rl.recipes import RECIPES


def _rows(batch: Batch, rows: slice) -> Batch:
    """Rows of a batch with one image per sample."""
    return dataclasses.replace(batch, **{field.name: getattr(batch, field.name)[rows]
                                         for field in dataclasses.fields(batch)
                                         if getattr(batch, field.name) is not None})


pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]


def _actor(preset: str, executed_steps: int) -> ActorCritic:
    torch.manual_seed(0)
    config = preset_config(preset)
    with torch.device("cuda"):
        model = model_class(config)(config)
        return ActorCritic(model, SamplerConfig(noise_level=0.5, executed_steps=executed_steps))


@pytest.mark.parametrize("preset", ["tiny", "n1.6-tiny",
                                    pytest.param("n1.5-3b", marks=pytest.mark.slow),
                                    pytest.param("n1.6-3b", marks=pytest.mark.slow)])
def test_micro_batched_evaluate_recomputes_the_rollout_log_prob(preset):
    executed = RECIPES["n1.6-3b" if preset.startswith("n1.6") else "n1.5-3b"]["executed_steps"]
    actor = _actor(preset, executed)
    batch = synthetic_batch(actor.model.config, batch=8, text_tokens=24).to("cuda")
    autocast = torch.autocast("cuda", dtype=torch.bfloat16)
    worst = 0.0
    for seed in range(3):
        with autocast:
            out = actor.act(batch, generator=torch.Generator("cuda").manual_seed(seed),
                            step_generator=torch.Generator().manual_seed(seed))
        for start in range(0, 8, 2):
            rows = slice(start, start + 2)
            with autocast, torch.no_grad():
                log_prob, value = actor.evaluate(_rows(batch, rows), out.chain[rows], out.stochastic[rows])
            worst = max(worst, (log_prob - out.log_prob[rows]).abs().max().item())
            torch.testing.assert_close(value, out.value[rows], rtol=0.02, atol=0.02)
    print(f"{preset}: executed {executed}, max |log-prob difference| {worst:.4f} nats")
    assert worst < 0.05
