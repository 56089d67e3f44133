"""The learner under two processes (gloo on the CPU): each rank rolls out its own environments, the
combined gradients keep the weights equal on both ranks, and the update equals one process's on both
ranks' rollouts."""

from __future__ import annotations

import json
import os
import socket

import torch
import torch.multiprocessing as mp
from safetensors.torch import load_file, save_file

from groot.rl.synthetic import SyntheticLibero

MAX_STEPS = 8


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank_main(rank: int, port: int, checkpoint: str, out: str) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        WORLD_SIZE="2",
        OMP_NUM_THREADS="1",
    )
    from groot.rl.commands import RLConfig, build
    from groot.rl.rollout import RolloutWorker
    from groot.rl.trainer import train
    from groot.train.distributed import init_distributed, shutdown

    ctx = init_distributed(use_cuda=False)
    cfg = RLConfig(
        model_path=checkpoint,
        output_dir=out,
        iterations=1,
        num_envs=1 + rank,
        max_episode_steps=MAX_STEPS,
        executed_steps=4,
        rollout_epochs=1,
        update_epochs=1,
        global_batch_size=2,
        micro_batch_size=1,
        value_hidden=[16],
        eval_every=0,
        save_every=1,
        device="cpu",
        tensorboard=False,
    )
    built = build(cfg, None, ctx)
    worker = RolloutWorker(SyntheticLibero(1 + rank, MAX_STEPS), built.policy, built.actor, 4, MAX_STEPS // 4)
    train(built.policy, built.actor, worker, built.learner, built.settings, None, tensorboard=False)
    state = {k: v.detach().clone().contiguous() for k, v in built.actor.state_dict().items()}
    save_file(state, os.path.join(out, f"rank{rank}.safetensors"))
    shutdown(ctx)


def test_two_learner_processes_stay_in_sync(tiny_libero_checkpoint, tmp_path):
    mp.spawn(_rank_main, args=(_free_port(), str(tiny_libero_checkpoint), str(tmp_path)), nprocs=2, join=True)
    rank0 = load_file(str(tmp_path / "rank0.safetensors"))
    rank1 = load_file(str(tmp_path / "rank1.safetensors"))
    for name, value in rank0.items():
        assert torch.equal(value, rank1[name]), name
    start = load_file(str(tiny_libero_checkpoint / "model.safetensors"))
    name = "action_head.action_decoder.layer2.W"
    assert not torch.equal(start[name], rank0[f"model.{name}"])
    assert (tmp_path / "checkpoint-1" / "training_state" / "trainer_state.json").is_file()
    # rank 0 alone logs, one row with the episodes of both ranks: 1 + 2 environments
    (row,) = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert row["episodes"] == 3.0


def _update_main(rank: int, world: int, port: int, checkpoint: str, out: str) -> None:
    """One rollout per half (two halves: rank r of two processes rolls out half r; a single process
    rolls out both), one PPO update with one optimizer step over everything; saves the normalized
    advantages and the weights."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), LOCAL_RANK=str(rank),
                      WORLD_SIZE=str(world), OMP_NUM_THREADS="1")
    from groot.rl.commands import RLConfig, build
    from groot.rl.rollout import RolloutWorker
    from groot.rl.trainer import gather_rollouts
    from groot.train.distributed import init_distributed, shutdown

    ctx = init_distributed(use_cuda=False)
    cfg = RLConfig(model_path=checkpoint, output_dir=out, num_envs=2, max_episode_steps=MAX_STEPS,
                   executed_steps=4, update_epochs=1, global_batch_size=64, micro_batch_size=2,
                   value_hidden=[16], device="cpu", tensorboard=False)
    built = build(cfg, None, ctx)
    halves = [rank] if world == 2 else [0, 1]
    episodes = [RolloutWorker(SyntheticLibero(2, MAX_STEPS), built.policy, built.actor, 4, MAX_STEPS // 4)
                .run(seed=100 + half) for half in halves]
    data = gather_rollouts(episodes, 0.99, 0.95, normalize=True, ctx=ctx)
    built.learner.update(data, seed=7)
    state = {k: v.detach().clone().contiguous() for k, v in built.actor.state_dict().items()}
    state["advantages"] = data.advantages.contiguous()
    save_file(state, os.path.join(out, f"world{world}_rank{rank}.safetensors"))
    shutdown(ctx)


def test_two_learners_update_as_one_learner_with_both_rollouts(tiny_libero_checkpoint, tmp_path):
    """Data parallelism changes nothing but where the work runs: advantages are normalized with the
    statistics of every rank's transitions, and the averaged gradient of two equal halves is the
    gradient of the whole, so the weights after the update equal a single process's on all the data."""
    for world in (1, 2):
        mp.spawn(_update_main, args=(world, _free_port(), str(tiny_libero_checkpoint), str(tmp_path)),
                 nprocs=world, join=True)
    single = load_file(str(tmp_path / "world1_rank0.safetensors"))
    ranks = [load_file(str(tmp_path / f"world2_rank{rank}.safetensors")) for rank in (0, 1)]
    advantages = torch.cat([rank.pop("advantages") for rank in ranks])
    torch.testing.assert_close(advantages, single.pop("advantages"), rtol=0, atol=1e-6)
    for name, value in single.items():
        torch.testing.assert_close(ranks[0][name], value, rtol=1e-5, atol=1e-6, msg=name)
        assert torch.equal(ranks[0][name], ranks[1][name]), name
