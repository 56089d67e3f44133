"""Training data: datasets from `--dataset-path`s, a resumable sharded sampler, the batch loader.

Every sample is drawn under its own seed (from run seed, epoch and index), so augmentations do not
depend on worker count, on which worker drew the sample, or on where a run was resumed; the loader
never touches the global RNG, which stays reserved for the model (noise, timesteps, dropout).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import itertools
import os
import random
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np
import torch
from torch.utils import _pytree as pytree
from torch.utils.data import DataLoader, Dataset, Sampler

from groot.errors import ConfigError
from groot.model.batch import Batch
from groot.utils.process import exit_when_process_ends
from groot.utils.seeding import hashed_seed
from groot.utils.system import usable_cores


def build_dataset(paths: list[str], data_config: Any, embodiment_tag: str, video_backend: str,
                  balance_dataset_weights: bool, balance_trajectory_weights: bool, seed: int,
                  frame_cache_dir: str | None = None):
    """One GrootDataset per path; more than one path -> MixtureDataset with weight 1.0 each (spec 6.4).

    Each dataset first passes `groot data validate`'s checks except the two slow ones: videos are checked
    from their container headers (readable, resolution, frame count covering every episode) instead of
    from every packet, and no frame is decoded. An unusable meta/stats.json is recomputed, not refused.
    Raises DatasetError naming the file, key, expected and found value."""
    from groot.data.dataset import GrootDataset, MixtureDataset
    from groot.data.lerobot import validate_dataset

    if not paths:
        raise ConfigError("--dataset-path: expected at least one dataset directory, found none")
    datasets = [GrootDataset(path, data_config, embodiment_tag=embodiment_tag, video_backend=video_backend,
                             frame_cache_dir=frame_cache_dir) for path in paths]
    for dataset in datasets:
        validate_dataset(dataset.reader, decode=False, count_packets=False, stats_file=False)
    if len(datasets) == 1:
        return datasets[0]
    return MixtureDataset(datasets, weights=[1.0] * len(datasets),
                          balance_dataset_weights=balance_dataset_weights,
                          balance_trajectory_weights=balance_trajectory_weights, seed=seed)


def fit_data_config_to_model(data_config, model_config):
    """The data config with the model's input geometry and padding (a new object; the result is stored
    in the checkpoint, so inference transforms the same way).

    N1.5: `image_size` lowered to the vision tower's size when the config asks for more (the processor
    resizes every image to it anyway; cropping and colour-jittering at 224 px only to shrink to 56 px
    costs 16x the pixels), `max_state_dim` / `max_action_dim` from the action head.
    N1.6: native-aspect images (`shortest_edge`, edge `shortest_image_edge`, crop `crop_fraction`, sides
    multiples of patch x unshuffle), state / action dims and horizon from the action head, min-max
    outliers clipped, the N1.6 embodiment table."""
    head = model_config.action_head_cfg
    dims = {"max_state_dim": head.max_state_dim, "max_action_dim": head.max_action_dim}
    if model_config.generation == "n1.6":
        backbone = model_config.backbone_cfg
        return dataclasses.replace(
            data_config, image_resize="shortest_edge", image_size=model_config.shortest_image_edge,
            crop_scale=model_config.crop_fraction,
            image_multiple=backbone.vision.patch_size * backbone.pixel_unshuffle,
            max_action_horizon=head.action_horizon, clip_outliers=True, embodiment_table="n1.6", **dims)
    model_size = model_config.backbone_cfg.vision.image_size
    return dataclasses.replace(data_config, image_size=min(data_config.image_size, model_size), **dims)


def cores_per_process() -> int:
    """CPU cores this process may use, shared among the training processes of this machine."""
    return max(1, usable_cores() // int(os.environ.get("LOCAL_WORLD_SIZE", "1")))


def loader_workers(requested: int, device: torch.device) -> int:
    """DataLoader workers to start: as requested with a GPU; on the CPU at most one fewer than the
    cores, so that the model step keeps a core of its own (8 workers on 2 cores only fight it)."""
    if device.type != "cpu":
        return requested
    return min(requested, cores_per_process() - 1)


@contextlib.contextmanager
def cpu_training_threads(workers: int, device: torch.device):
    """On the CPU, torch intra-op threads of this process lowered to the cores the `workers` leave free
    (never raised above the current setting), restored on exit: threads beyond the free cores only spin
    against the workers and each other."""
    before = torch.get_num_threads()
    if device.type == "cpu":
        torch.set_num_threads(max(1, min(before, cores_per_process() - workers)))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def use_eval_transforms(dataset):
    """Switch a GrootDataset / MixtureDataset to evaluation (no augmentation, index-seeded mixing)."""
    for member in getattr(dataset, "datasets", [dataset]):
        if getattr(member, "transform", None) is not None:
            member.transform.eval()
    if hasattr(dataset, "training"):
        dataset.training = False
    return dataset


class SeededSamples(Dataset):
    """`dataset[(index, seed)]`: `dataset[index]` drawn with python / numpy / torch RNGs seeded by
    `seed`; the caller's RNG states are restored afterwards."""

    def __init__(self, dataset: Dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int] | tuple[int, int, int]):
        """key: (index, seed) or (index, seed, epoch); an epoch is first set on a dataset that has
        `set_epoch` (a mixture draws each epoch's samples anew), here, where the copy that loads lives."""
        index, seed = key[:2]
        if len(key) == 3 and hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(key[2])
        python_state, numpy_state = random.getstate(), np.random.get_state()
        try:
            with torch.random.fork_rng(devices=[]):
                random.seed(seed)
                np.random.seed(seed % (2**32))
                # the CPU generator only: `torch.manual_seed` would also reseed the CUDA generator (which
                # fork_rng(devices=[]) does not restore), so loading in the trainer's process
                # (0 workers) would replace the model's noise and dropout stream by the last sample's seed
                torch.default_generator.manual_seed(seed)
                return self.dataset[index]
        finally:
            random.setstate(python_state)
            np.random.set_state(numpy_state)


class ResumableShardedSampler(Sampler):
    """Shuffled epoch order (seeded by run seed + epoch), split across ranks, able to start mid-epoch.

    Yields `(index, seed)` keys for `SeededSamples`. Each rank sees `len(dataset) // world`
    samples per epoch (the tail that does not split evenly is dropped).
    """

    def __init__(self, num_samples: int, seed: int, rank: int = 0, world_size: int = 1):
        if num_samples < world_size:
            raise ConfigError(f"dataset has {num_samples} samples; need at least one per process "
                             f"({world_size})")
        self.num_samples, self.seed, self.rank, self.world_size = num_samples, seed, rank, world_size
        self.epoch = 0
        self.start = 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """Iterate epoch `epoch`, skipping the first `start` samples of this rank's share."""
        self.epoch, self.start = epoch, start

    def __len__(self) -> int:
        return self.num_samples // self.world_size - self.start

    def __iter__(self) -> Iterator[tuple[int, int]]:
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        order = torch.randperm(self.num_samples, generator=generator)
        per_rank = self.num_samples // self.world_size
        shard = order[: per_rank * self.world_size][self.rank:: self.world_size]
        for index in shard[self.start:].tolist():
            yield index, hashed_seed(self.seed, self.epoch, index, bits=63)


def batches_per_epoch(num_samples: int, world_size: int, batch_size: int, source: str = "dataset") -> int:
    """Whole batches of `batch_size` each of `world_size` processes takes from an epoch (ConfigError if
    none: training would never take a step)."""
    count = num_samples // world_size // batch_size
    if count == 0:
        raise ConfigError(f"{source}: {num_samples} samples; need a batch of {batch_size} per process "
                          f"({world_size} processes)")
    return count


class EpochStream(Sampler):
    """Epoch after epoch of `ResumableShardedSampler`'s order from (`epoch`, `start_batch`), each epoch
    cut to its whole batches of `batch_size`, as `(index, seed, epoch)` keys without end.

    One loader over this stream serves the whole run: its workers start once and prefetch across
    epoch boundaries, where a loader per epoch would leave the GPU idle while new workers start and
    fill their queues. The batches are the ones a loader per epoch with `drop_last` yields."""

    def __init__(self, num_samples: int, seed: int, rank: int, world_size: int, batch_size: int,
                 epoch: int, start_batch: int):
        self.order, self.seed = ResumableShardedSampler(num_samples, seed, rank, world_size), seed
        self.per_epoch = batches_per_epoch(num_samples, world_size, batch_size) * batch_size
        self.epoch, self.start = epoch, start_batch * batch_size

    def __iter__(self) -> Iterator[tuple[int, int, int]]:
        epoch, start = self.epoch, self.start
        while True:
            self.order.set_epoch(epoch, start)
            for index, seed in itertools.islice(self.order, self.per_epoch - start):
                yield index, seed, epoch
            epoch, start = epoch + 1, 0


def build_loader(dataset: Dataset, sampler: Sampler, batch_size: int, collate: Callable,
                 num_workers: int, pin_memory: bool) -> DataLoader:
    """Batches of `batch_size` (a last partial batch is dropped: static shapes).

    Workers start from a forkserver (a clean process with torch and groot imported), not by forking the
    trainer: loaders are made when the trainer already runs threads (torch.compile's compile workers,
    the pin-memory thread, CUDA; the held-out evaluation's loader, a resumed run's), and a fork of a
    threaded process can inherit a lock held by another thread and hang. That hang was seen on a GPU:
    a loader forked after a compiled run never delivered its first batch.

    Each worker kills itself when the trainer ends: a worker's parent is the forkserver, which stays up
    as long as a worker does, so a SIGKILLed trainer would otherwise leave both (and the resource
    tracker) running."""
    return DataLoader(SeededSamples(dataset), batch_size=batch_size, sampler=sampler, collate_fn=collate,
                      num_workers=num_workers, pin_memory=pin_memory, drop_last=True,
                      generator=torch.Generator().manual_seed(sampler.seed),
                      prefetch_factor=4 if num_workers > 0 else None,
                      worker_init_fn=functools.partial(_exit_with_trainer, os.getpid()),
                      multiprocessing_context=_worker_context() if num_workers > 0 else None)


def _exit_with_trainer(trainer_pid: int, worker_id: int) -> None:
    exit_when_process_ends(trainer_pid)


def _worker_context():
    import multiprocessing

    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(  # imported once, not per worker
        ["torch", "groot.data.dataset", "groot.model.processor", "groot.train.data"])
    return context


def batches_on_device(batches: Iterable[Batch], device: torch.device,
                      prepare: Callable[[Batch], Batch] | None = None) -> Iterator[Batch]:
    """`Batch.to(device)` over `batches` (each first passed through `prepare`, on the host, if given); on CUDA
    the next batch is prepared and its host-to-device copy issued on a side stream before the current
    batch is handed out, so both overlap the step instead of preceding it."""
    if device.type != "cuda":
        yield from ((prepare(batch) if prepare else batch).to(device, non_blocking=True) for batch in batches)
        return
    copy_stream = torch.cuda.Stream(device)
    ready = None
    for batch in batches:
        batch = prepare(batch) if prepare else batch
        with torch.cuda.stream(copy_stream):
            issued = batch.to(device, non_blocking=True)
        if ready is not None:
            yield ready
        torch.cuda.current_stream(device).wait_stream(copy_stream)
        for value in pytree.tree_leaves(issued):  # the allocator must not reuse these until the step is done
            if isinstance(value, torch.Tensor) and value.is_cuda:
                value.record_stream(torch.cuda.current_stream(device))
        ready = issued
    if ready is not None:
        yield ready
