"""Multi-process training: torchrun relaunch, process-group setup, DDP / FSDP wrapping, reductions.

`--num-gpus N` (N > 1) outside torchrun re-executes the same command under
`python -m torch.distributed.run --standalone --nproc_per_node N`; inside torchrun each process
reads RANK / WORLD_SIZE / LOCAL_RANK, joins the group (NCCL on CUDA, gloo on CPU) and trains one
shard of every batch. Parallelism wraps the model from outside; the model code knows nothing of it.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

DDP_BUCKET_CAP_MB = 100  # official trainer setting


@dataclass(frozen=True)
class DistributedContext:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1


def launched_by_torchrun() -> bool:
    return "LOCAL_RANK" in os.environ and "WORLD_SIZE" in os.environ


def init_distributed(use_cuda: bool | None = None) -> DistributedContext:
    """Join the torchrun process group when there is one; otherwise a single-process context."""
    use_cuda = torch.cuda.is_available() if use_cuda is None else use_cuda
    if not launched_by_torchrun() or int(os.environ["WORLD_SIZE"]) == 1:
        return DistributedContext(0, 1, 0, torch.device("cuda" if use_cuda else "cpu"))
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ["LOCAL_RANK"])
    if use_cuda:
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo", rank=rank, world_size=world,
                                device_id=device if use_cuda else None)
    return DistributedContext(rank, world, local_rank, device)


def shutdown(ctx: DistributedContext) -> None:
    if ctx.is_distributed and dist.is_initialized():
        dist.destroy_process_group()


def barrier(ctx: DistributedContext) -> None:
    if ctx.is_distributed:
        dist.barrier()


def sum_across_ranks(value: torch.Tensor, ctx: DistributedContext) -> torch.Tensor:
    """The elementwise sum of a tensor over all processes, on the tensor's device (the value itself when
    single-process); the collective runs on the process's device."""
    if not ctx.is_distributed:
        return value
    total = value.detach().to(ctx.device, copy=True)
    dist.all_reduce(total, op=dist.ReduceOp.SUM)
    return total.to(value.device)


def mean_across_ranks(value: torch.Tensor, ctx: DistributedContext) -> torch.Tensor:
    """The mean of a tensor over all processes (the value itself when single-process)."""
    return sum_across_ranks(value, ctx) / ctx.world_size if ctx.is_distributed else value


def config_to_argv(cfg) -> list[str]:
    """Command-line flags that rebuild the dataclass `cfg` through `groot.utils.cli_args`."""
    argv: list[str] = []
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        flag = f"--{f.name.replace('_', '-')}"
        if isinstance(value, bool):
            argv.append(flag if value else f"--no-{f.name.replace('_', '-')}")
        elif value is None:
            continue
        elif isinstance(value, (list, tuple)):
            argv += [flag, *(str(v) for v in value)] if value else []
        else:
            argv += [flag, str(value)]
    return argv


def torchrun_command(num_processes: int, command_argv: list[str]) -> list[str]:
    """`python -m torch.distributed.run ... -m groot.cli <command_argv>`."""
    return [sys.executable, "-m", "torch.distributed.run", "--standalone",
            f"--nproc_per_node={num_processes}", "-m", "groot.cli", *command_argv]


def relaunch_under_torchrun(num_processes: int, command_argv: list[str]) -> None:
    """Run the command in `num_processes` processes and wait; raise if any of them failed."""
    command = torchrun_command(num_processes, command_argv)
    result = subprocess.run(command, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"torchrun exited with status {result.returncode}: {' '.join(command)}")


def wrap_ddp(model: nn.Module, device: torch.device) -> nn.Module:
    """DDP over this process's `device` (`cuda:<local rank>`, or the CPU with gloo)."""
    device_ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=device_ids, find_unused_parameters=False,
                                   bucket_cap_mb=DDP_BUCKET_CAP_MB)


def wrap_fsdp(model: nn.Module, bf16: bool, sharded_blocks_of: nn.Module) -> nn.Module:
    """Shard parameters, gradients and optimizer state (FSDP2): one unit per block of
    `sharded_blocks_of` (a submodule whose blocks run only through their own forward), the rest of the
    model in the root unit; bf16 compute with fp32 gradient reduction when `bf16`."""
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    from groot.train.blocks import outermost_blocks

    policy = MixedPrecisionPolicy(param_dtype=torch.bfloat16 if bf16 else None,
                                  reduce_dtype=torch.float32)
    for _, block in outermost_blocks(sharded_blocks_of, trainable_only=False):
        fully_shard(block, mp_policy=policy)
    fully_shard(model, mp_policy=policy)
    return model


def unwrap(model: nn.Module) -> nn.Module:
    """The user's model inside a DDP wrapper (FSDP2 shards in place, so it is the model itself)."""
    return model.module if isinstance(model, DistributedDataParallel) else model


@contextmanager
def gradient_sync(model: nn.Module, enabled: bool) -> Iterator[None]:
    """Backward passes inside the block reduce gradients across ranks only when `enabled` (the last
    micro-batch of an accumulation); otherwise they accumulate locally (DDP no_sync / FSDP2)."""
    if enabled:
        yield
    elif isinstance(model, DistributedDataParallel):
        with model.no_sync():
            yield
    elif hasattr(model, "set_requires_gradient_sync"):  # FSDP2
        model.set_requires_gradient_sync(False)
        try:
            yield
        finally:
            model.set_requires_gradient_sync(True)
    else:
        yield


def full_state_dict(model: nn.Module, ctx: DistributedContext, sharded: bool) -> dict[str, torch.Tensor]:
    """The whole model's state dict on rank 0, keys of the unwrapped model; {} on the other ranks.
    `sharded` (FSDP): a collective that every rank must enter; rank 0 receives full CPU tensors."""
    if sharded:
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        state = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
        return state if ctx.is_main else {}
    return unwrap(model).state_dict() if ctx.is_main else {}
