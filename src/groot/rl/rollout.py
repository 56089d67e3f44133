"""The rollout role: one episode of every environment with the policy batched on its device.

Each policy call takes the observations of the environments still running, samples a 16-step chunk
(flow-SDE, or the ODE when deterministic), and every environment executes the first `executed_steps`
actions of its chunk. Transitions are chunk-level: [T, N] grids (T policy calls, N environments) of
rewards, values, dones and a validity mask (false once an environment's episode has ended), plus the
model samples and denoising chains of the valid transitions, which the learner re-evaluates.
"""

from __future__ import annotations

import contextlib
import dataclasses
from typing import Any

import numpy as np
import torch

from groot.eval.closed_loop import video_frame
from groot.rl.actor import ActorCritic
from groot.rl.envs import VectorLibero
from groot.sim import libero


@dataclasses.dataclass
class EpisodeBatch:
    """One episode of N environments, T policy calls at most."""

    rewards: torch.Tensor  # [T, N] float32: chunk rewards
    values: torch.Tensor  # [T, N] float32
    log_probs: torch.Tensor  # [T, N] float32
    dones: torch.Tensor  # [T, N] bool: the episode ended during this chunk
    valid: torch.Tensor  # [T, N] bool: a transition happened
    samples: list[dict[str, Any]]  # model samples of the valid transitions, in (t, n) order of `valid`
    chains: torch.Tensor  # [M, K + 1, 16, 32] float32, M = valid.sum()
    stochastic: torch.Tensor  # [M, K] bool
    successes: list[bool]  # per environment
    lengths: list[int]  # environment steps per environment
    frames: dict[int, list[np.ndarray]]  # recorded environments' frames (agent | wrist view)


def batch_observation(observations: list[dict[str, Any]]) -> dict[str, Any]:
    """Env observations -> one batched policy observation: video [B, 1, H, W, 3], state [B, 1, D],
    language [B] str."""
    single = [libero.policy_observation(obs) for obs in observations]
    return {
        key: (
            [s[key][0] for s in single] if key == libero.LANGUAGE_KEY else np.stack([s[key] for s in single])
        )
        for key in single[0]
    }


def chunk_to_env_actions(actions: dict[str, np.ndarray], row: int, executed_steps: int) -> np.ndarray:
    """Row `row` of decoded action chunks {"action.<k>": [B, 16, D]} -> env actions [executed_steps, 7]."""
    mine = {key: value[row] for key, value in actions.items()}
    return np.stack([libero.action_to_vector(mine, step) for step in range(executed_steps)])


class RolloutWorker:
    """Runs episodes of `envs` with `actor`; `policy` (a groot Policy) supplies the observation
    transforms, the processor and the action decoding. `autocast`: bf16 autocast on CUDA."""

    def __init__(
        self,
        envs: VectorLibero,
        policy: Any,
        actor: ActorCritic,
        executed_steps: int,
        max_calls: int,
        autocast: bool = False,
    ):
        self.envs, self.policy, self.actor = envs, policy, actor
        self.executed_steps, self.max_calls, self.autocast = executed_steps, max_calls, autocast

    def device_context(self):
        device = self.policy.device
        if self.autocast and device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def run(
        self, seed: int, deterministic: bool = False, record: frozenset[int] = frozenset()
    ) -> EpisodeBatch:
        """One episode of every environment; sampling noise from generators seeded with `seed`."""
        device = self.policy.device
        noise_gen = torch.Generator(device).manual_seed(seed)
        step_gen = torch.Generator().manual_seed(seed + 1)
        n = self.envs.num_envs
        obs = self.envs.reset()
        rows: dict[str, list] = {"rewards": [], "values": [], "log_probs": [], "dones": [], "valid": []}
        samples, chains, stochastic = [], [], []
        successes, lengths = [False] * n, [0] * n
        frames: dict[int, list[np.ndarray]] = {i: [video_frame(obs[i])] for i in record}
        active = list(range(n))
        for _ in range(self.max_calls):
            if not active:
                break
            observation = batch_observation([obs[i] for i in active])
            call_samples, _ = self.policy.model_samples(observation)
            batch = self.policy.processor(call_samples).to(device)
            with self.device_context():
                out = self.actor.act(
                    batch, generator=noise_gen, step_generator=step_gen, deterministic=deterministic
                )
            decoded = self.policy.decode_actions(out.actions.float().cpu().numpy(),
                                                 self.policy.reference_state(observation))
            chunks = {
                i: chunk_to_env_actions(decoded, row, self.executed_steps) for row, i in enumerate(active)
            }
            results = self.envs.step(chunks, record)
            grid = {key: torch.zeros(n) for key in ("rewards", "values", "log_probs")}
            dones, valid = torch.zeros(n, dtype=torch.bool), torch.zeros(n, dtype=torch.bool)
            for row, i in enumerate(active):
                result = results[i]
                grid["rewards"][i], grid["values"][i] = result.reward, float(out.value[row])
                grid["log_probs"][i] = float(out.log_prob[row])
                dones[i], valid[i] = bool(result.done), True
                obs[i], successes[i], lengths[i] = result.obs, result.success, result.steps
                if i in frames:
                    frames[i].extend(result.frames)
            samples.extend(call_samples)
            chains.append(out.chain.cpu())
            stochastic.append(out.stochastic.cpu())
            for key, value in grid.items():
                rows[key].append(value)
            rows["dones"].append(dones)
            rows["valid"].append(valid)
            active = [i for i in active if not results[i].done]
        if active:  # out of policy calls: the episodes end here
            rows["dones"][-1][active] = True
        return EpisodeBatch(
            **{key: torch.stack(value) for key, value in rows.items()},
            samples=samples,
            chains=torch.cat(chains),
            stochastic=torch.cat(stochastic),
            successes=successes,
            lengths=lengths,
            frames=frames,
        )
