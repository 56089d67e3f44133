"""One loader for the whole run: `EpochStream` yields the batches of a loader per epoch, and `finetune`
starts its loader (and its workers) once, however many epochs it crosses or where it resumes."""

import itertools
import shutil

import pytest
from test_train_finetune import _config

from groot.errors import ConfigError
from groot.train import data as train_data
from groot.train.data import EpochStream, ResumableShardedSampler
from groot.train.finetune import finetune
from groot.train.logging import read_metrics


def per_epoch_batches(num_samples, seed, rank, world, batch_size, epoch, start_batch, count):
    """`count` batches of (index, seed, epoch) as a loader per epoch with drop_last yields them."""
    batches = []
    while len(batches) < count:
        sampler = ResumableShardedSampler(num_samples, seed, rank, world)
        sampler.set_epoch(epoch, start=start_batch * batch_size)
        keys = [(index, key_seed, epoch) for index, key_seed in sampler]
        whole = len(keys) // batch_size * batch_size
        batches += [keys[i:i + batch_size] for i in range(0, whole, batch_size)]
        epoch, start_batch = epoch + 1, 0
    return batches[:count]


@pytest.mark.parametrize("rank, world, epoch, start_batch", [(0, 1, 0, 0), (1, 2, 3, 2), (0, 3, 1, 1),
                                                                (0, 1, 2, 15)])  # 15: at an epoch's end
def test_stream_yields_the_batches_of_a_loader_per_epoch(rank, world, epoch, start_batch):
    num_samples, batch_size = 61, 4
    stream = EpochStream(num_samples, 5, rank, world, batch_size, epoch, start_batch)
    keys = list(itertools.islice(iter(stream), 20 * batch_size))
    got = [keys[i:i + batch_size] for i in range(0, len(keys), batch_size)]
    assert got == per_epoch_batches(num_samples, 5, rank, world, batch_size, epoch, start_batch, 20)
    assert len({key[2] for key in keys}) >= 2  # it crossed an epoch boundary


def test_stream_refuses_a_dataset_smaller_than_one_batch_per_process():
    with pytest.raises(ConfigError, match="need a batch of 4 per process"):
        EpochStream(7, 0, 0, 2, 4, 0, 0)


def test_finetune_crosses_epochs_and_resumes_on_one_loader(libero_dataset, tmp_path, monkeypatch):
    built = []
    original = train_data.build_loader

    def counting_build_loader(*args, **kwargs):
        built.append(args[1])
        return original(*args, **kwargs)

    monkeypatch.setattr(train_data, "build_loader", counting_build_loader)
    # 60 samples in batches of 16: 3 batches an epoch, 8 steps cross two epoch boundaries
    settings = dict(batch_size=16, max_steps=8, save_steps=4)
    finetune(_config(libero_dataset, tmp_path / "straight", **settings))
    assert len(built) == 1
    straight = read_metrics(tmp_path / "straight" / "metrics.jsonl")
    assert [round(r["epoch"], 4) for r in straight] == [round(s / 3, 4) for s in range(1, 9)]

    interrupted = tmp_path / "interrupted"
    finetune(_config(libero_dataset, interrupted, **settings))
    shutil.rmtree(interrupted / "checkpoint-8")  # as if the run had died after step 4's checkpoint
    built.clear()
    finetune(_config(libero_dataset, interrupted, resume=True, **settings))  # from epoch 1, batch 1
    assert len(built) == 1 and (built[0].epoch, built[0].start) == (1, 16)
    resumed = read_metrics(interrupted / "metrics.jsonl")
    assert [r["step"] for r in resumed] == list(range(1, 9))
    for a, b in zip(resumed, straight, strict=True):
        assert a["loss"] == pytest.approx(b["loss"], abs=1e-6)
