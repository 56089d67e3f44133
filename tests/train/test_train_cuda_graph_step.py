"""`GraphedTrainStep` on a GPU: recorded-and-replayed steps give the losses, gradient norms and weights of
plain steps (same draws, learning rate following the schedule), one recording per batch layout; the
pre-drawn flow-matching times equal the action head's own draw; `finetune --cuda-graphs on` trains as
`off` does."""

from __future__ import annotations

import functools
import shutil
import threading

import pytest
import torch

from groot.model.gr00t_n15 import GR00TN15
from groot.model.synthetic_batch import synthetic_batch
from groot.train.cuda_graph_step import GraphedTrainStep
from groot.train.embodiment_slices import EmbodimentSlices
from groot.train.finetune import FinetuneConfig, finetune
from groot.train.logging import read_metrics
from groot.train.optim import WarmupCosineSchedule, build_optimizer, parameter_groups
from groot.train.precision import cast_frozen_to_bf16
from groot.train.step import draw_flow_times, micro_batch, train_step

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
CUDA = torch.device("cuda")


def _setup():
    torch.manual_seed(0)
    model = GR00TN15.from_preset("tiny")
    model.set_trainable(tune_llm=False, tune_visual=False, tune_projector=True, tune_diffusion_model=True)
    EmbodimentSlices(model, [31])
    cast_frozen_to_bf16(model)
    model.to(CUDA).train()
    optimizer = build_optimizer(parameter_groups(model, 0.1), learning_rate=1e-3)
    schedule = WarmupCosineSchedule(optimizer, warmup_steps=3, total_steps=10)
    return model, optimizer, schedule


def _train(graphed: bool, layouts: str, micro_batches: int = 1):
    """One step per letter of `layouts` (A, B: two prompt lengths), each accumulating `micro_batches`
    batches -> (losses, norms, weights, step)."""
    model, optimizer, schedule = _setup()
    batches = {name: synthetic_batch(model.config, batch=4, text_tokens=tokens, seed=1).to(CUDA)
               for name, tokens in (("A", 3), ("B", 5))}
    step = functools.partial(train_step, model, optimizer, max_grad_norm=0.1, bf16=True)
    if graphed:
        step = GraphedTrainStep(step, optimizer, warmup=2)
    torch.manual_seed(3)
    losses, norms = [], []
    for name in layouts:
        loss, norm = step([micro_batch(model, batches[name], CUDA) for _ in range(micro_batches)])
        schedule.step()
        losses.append(loss)
        norms.append(norm)
    weights = {name: p.detach().clone() for name, p in model.named_parameters() if p.requires_grad}
    return torch.stack(losses).tolist(), torch.stack(norms).tolist(), weights, step


@pytest.mark.parametrize("micro_batches", [1, 2])
def test_replayed_steps_equal_plain_steps_with_one_recording_per_layout(micro_batches):
    layouts = "AAAABBBAA"  # A: warmup, warmup, record, replay; B likewise; A replays again
    plain_losses, plain_norms, plain_weights, _ = _train(False, layouts, micro_batches)
    losses, norms, weights, graphed = _train(True, layouts, micro_batches)

    assert len(graphed.recordings) == 2
    assert losses == plain_losses
    assert norms == plain_norms
    assert min(plain_norms) > 0.1  # every step clips
    for name, value in plain_weights.items():
        assert torch.equal(weights[name], value), name


def test_recording_survives_pinned_allocations_on_another_thread():
    """A DataLoader's pin-memory thread allocates page-locked memory whenever it likes, also while a step
    is being recorded: the recording must succeed and the other thread's allocation too."""
    model, optimizer, _ = _setup()
    batch = synthetic_batch(model.config, batch=4, text_tokens=3, seed=1).to(CUDA)
    plain_step = functools.partial(train_step, model, optimizer, max_grad_norm=0.1, bf16=True)
    pinned = []

    def pin() -> None:  # an odd size, so the host allocator has no cached block for it
        pinned.append(torch.empty(3 * 2**25 + 1, dtype=torch.uint8, pin_memory=True))

    def step_pinning_while_recorded(batches):
        if torch.cuda.is_current_stream_capturing():
            thread = threading.Thread(target=pin)
            thread.start()
            thread.join()
        return plain_step(batches)

    step = GraphedTrainStep(step_pinning_while_recorded, optimizer, warmup=1)
    losses = [step([micro_batch(model, batch, CUDA)])[0] for _ in range(3)]  # warmup, record, replay
    assert len(step.recordings) == 1
    assert len(pinned) == 1 and pinned[0].is_pinned()
    assert all(torch.isfinite(loss) for loss in losses)


def test_pre_drawn_flow_times_equal_the_action_heads_own_draw():
    model, _, _ = _setup()
    batch = synthetic_batch(model.config, batch=4, text_tokens=3).to(CUDA)
    torch.manual_seed(5)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        inside = model(batch)["loss"]
    torch.manual_seed(5)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        outside = model(batch, t=draw_flow_times(model, batch, CUDA))["loss"]
    assert torch.equal(inside, outside)


def _finetune(dataset, output_dir, **overrides) -> list[tuple[float, float]]:
    values = dict(dataset_path=[str(dataset)], output_dir=str(output_dir), data_config="libero_panda",
                  base_model="tiny", batch_size=2, max_steps=8, save_steps=4, logging_steps=1,
                  dataloader_num_workers=0, compile="off", cuda_graphs="on")
    finetune(FinetuneConfig(**{**values, **overrides}))
    return [(r["loss"], r["grad_norm"]) for r in read_metrics(output_dir / "metrics.jsonl")]


@pytest.fixture
def recordings(monkeypatch) -> list[int]:
    """Counts the steps `GraphedTrainStep` records (each is replayed at once)."""
    recorded = []
    record = GraphedTrainStep._record
    monkeypatch.setattr(GraphedTrainStep, "_record",
                        lambda self, batches: recorded.append(len(batches)) or record(self, batches))
    return recorded


@pytest.mark.parametrize("accumulation", [1, 2])
def test_finetune_with_cuda_graphs_trains_as_without(libero_dataset, tmp_path, recordings, accumulation):
    graphed = _finetune(libero_dataset, tmp_path / "on", gradient_accumulation_steps=accumulation)
    plain = _finetune(libero_dataset, tmp_path / "off", gradient_accumulation_steps=accumulation,
                      cuda_graphs="off")
    assert graphed == plain
    assert recordings and set(recordings) == {accumulation}  # replayed steps of that many micro-batches


def test_graphed_resume_reproduces_the_uninterrupted_run(libero_dataset, tmp_path, recordings):
    straight = _finetune(libero_dataset, tmp_path / "straight")
    _finetune(libero_dataset, tmp_path / "interrupted")
    shutil.rmtree(tmp_path / "interrupted" / "checkpoint-8")  # as if it had died after step 4's checkpoint
    assert _finetune(libero_dataset, tmp_path / "interrupted", resume=True) == straight
    assert recordings
