"""Actor-critic around a GR00T model (N1.5 or N1.6), built from the model's public sampling pieces.

`act(batch)` samples a chunk with the flow-SDE (`groot.rl.sde`) and returns the whole denoising chain,
which steps were stochastic, the chunk log-probability and the critic's value. `evaluate(batch, chain,
stochastic)` recomputes both for the stored chain: the log-probability of the stored x_{k+1} under the
transition the current weights give at the stored x_k. The model itself is untouched: no RL argument is
threaded through its signatures, and it always stays in eval mode (dropout off) while sampling and
updating.

Stochastic steps: by default one denoising step j, drawn per call (the same for the whole batch; never
the last with `ignore_last`), uses the SDE and the others the deterministic Euler step; the chunk
log-probability is that transition's density. With `joint_log_prob` every step (but the last with
`ignore_last`) is stochastic and the log-probability is the mean of log N(x_0; 0, I) and every
stochastic transition's density. Densities cover the first `executed_steps` timesteps and the first
`action_dim` columns. Noise level 0 gives the deterministic sampler, bit for bit `action_head.sample`.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from groot.model.action_head import Category, StepConditioning, resolve_category
from groot.model.batch import Batch
from groot.rl.sde import chunk_log_prob, euler_step, sde_moments, step_time
from groot.rl.value import ValueHead, value_features


@dataclasses.dataclass(frozen=True)
class SamplerConfig:
    noise_level: float = 0.5  # a of the flow-SDE; 0: deterministic
    num_steps: int = 4  # denoising steps K
    executed_steps: int = 5  # timesteps of the chunk the environment executes (log-probability span)
    action_dim: int = 7  # the embodiment's real action columns (log-probability span)
    joint_log_prob: bool = False
    ignore_last: bool = False


@dataclasses.dataclass
class Encoded:
    """What every denoising step of one batch shares."""

    state_tokens: torch.Tensor  # [B, 1, W]
    category: Category
    cross_kv: list
    cross_masks: list | None
    critic_input: torch.Tensor  # [B, D + W] float32, detached


@dataclasses.dataclass
class ActOutput:
    chain: torch.Tensor  # [B, K + 1, T, A] float32: x_0 (noise) ... x_K (normalized actions)
    stochastic: torch.Tensor  # bool [B, K]: which transitions used the SDE
    log_prob: torch.Tensor  # [B] float32 (zeros when nothing was stochastic)
    value: torch.Tensor  # [B] float32

    @property
    def actions(self) -> torch.Tensor:
        """Normalized action chunk [B, T, A], as `get_action`'s action_pred."""
        return self.chain[:, -1]


class ActorCritic(nn.Module):
    """`model` (GR00TN15 / GR00TN16) + a `ValueHead` on its mean VL feature and state features."""

    def __init__(
        self, model: nn.Module, sampler: SamplerConfig, value_hidden: tuple[int, ...] = (1024, 512, 256)
    ):
        super().__init__()
        self.model = model
        self.sampler = sampler
        head_cfg = model.config.action_head_cfg
        critic_width = head_cfg.backbone_embedding_dim + head_cfg.input_embedding_dim
        self.value_head = ValueHead(critic_width, value_hidden)
        self.train(False)

    def train(self, mode: bool = True) -> ActorCritic:
        """The model stays in eval mode (dropout off) whatever `mode`: its log-probabilities must be the
        same functions of the weights at sampling and at update time."""
        super().train(mode)
        self.model.eval()
        return self

    @property
    def head(self) -> nn.Module:
        return self.model.action_head

    def _dtype(self) -> torch.dtype:
        return next(self.head.parameters()).dtype

    def encode(self, batch: Batch) -> Encoded:
        """Backbone (without autograd when no backbone weight trains), VL encoding, state tokens, the
        DiT's cross-attention K/V, and the critic's detached input."""
        backbone_trains = any(p.requires_grad for p in self.model.backbone.parameters())
        with torch.set_grad_enabled(backbone_trains and torch.is_grad_enabled()):
            features = self.model.backbone_features(batch)  # [B, L, D]
        vl = self.head.encode_vl(features)
        category = resolve_category(batch.embodiment_id)
        state_tokens = self.head.state_encoder(batch.state.to(self._dtype()), category)  # [B, 1, W]
        return Encoded(
            state_tokens,
            category,
            self.head.model.cross_kv(vl),
            self.head.cross_masks(self.model.vl_masks(batch)),
            value_features(vl, batch.attention_mask, state_tokens),
        )

    def _velocity(self, enc: Encoded, x: torch.Tensor, conditioning: StepConditioning) -> torch.Tensor:
        return self.head.predict_velocity(
            enc.state_tokens, x.to(self._dtype()), enc.category, enc.cross_kv, conditioning, enc.cross_masks
        )

    def stochastic_steps(self, batch_size: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """bool [B, K]: the steps this call samples with the SDE (see the module docstring)."""
        cfg = self.sampler
        steps = torch.zeros(batch_size, cfg.num_steps, dtype=torch.bool)
        if cfg.noise_level == 0:
            return steps
        candidates = cfg.num_steps - 1 if cfg.ignore_last else cfg.num_steps
        if cfg.joint_log_prob:
            steps[:, :candidates] = True
        else:
            j = int(torch.randint(candidates, (1,), generator=generator).item())
            steps[:, j] = True
        return steps

    @torch.no_grad()
    def act(
        self,
        batch: Batch,
        noise: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        step_generator: torch.Generator | None = None,
        deterministic: bool = False,
    ) -> ActOutput:
        """Sample one chunk per row. noise [B, T, A] (default: drawn with `generator` on the model's
        device); `step_generator` (CPU) draws the stochastic step; `deterministic`: the ODE sampler."""
        cfg = self.sampler
        enc = self.encode(batch)
        rows, device = enc.state_tokens.shape[0], enc.state_tokens.device
        head_cfg = self.head.cfg
        if noise is None:
            noise = torch.randn(
                (rows, head_cfg.action_horizon, head_cfg.action_dim),
                dtype=self._dtype(),
                device=device,
                generator=generator,
            )
        stochastic = (
            torch.zeros(rows, cfg.num_steps, dtype=torch.bool)
            if deterministic
            else self.stochastic_steps(rows, step_generator)
        )
        conditionings = self.head.denoising_conditionings(cfg.num_steps, rows, device)
        x = noise.to(self._dtype())
        chain, log_probs = [x.float()], []
        for k, conditioning in enumerate(conditionings):
            velocity = self._velocity(enc, x, conditioning)
            rows_sde = stochastic[:, k].to(device)
            if not bool(rows_sde.any()):
                x = euler_step(x, velocity, cfg.num_steps)
            else:
                t = step_time(k, cfg.num_steps)
                mean, std = sde_moments(x, velocity, t, cfg.num_steps, cfg.noise_level)
                eps = torch.randn(mean.shape, dtype=mean.dtype, device=device, generator=generator)
                sde_x = (mean + std * eps).to(x.dtype)
                x = torch.where(rows_sde[:, None, None], sde_x, euler_step(x, velocity, cfg.num_steps))
                log_probs.append(torch.where(rows_sde, self._span_log_prob(x, mean, std), 0.0))
            chain.append(x.float())
        chain_t = torch.stack(chain, 1)  # [B, K + 1, T, A]
        log_prob = self._combine(chain_t, stochastic, log_probs)
        return ActOutput(chain_t, stochastic, log_prob, self.value_head(enc.critic_input))

    def evaluate(
        self, batch: Batch, chain: torch.Tensor, stochastic: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Log-probability [B] of the stored chain's stochastic transitions under the current weights and
        the critic's value [B]; differentiable. chain [B, K + 1, T, A], stochastic bool [B, K]."""
        cfg = self.sampler
        enc = self.encode(batch)
        device = enc.state_tokens.device
        chain, stochastic = chain.to(device), stochastic.to(device)
        buckets = torch.tensor(self.head.timestep_buckets(cfg.num_steps), device=device)
        log_probs = []
        if bool((stochastic.sum(1) == 1).all()):  # one step per row: one DiT pass, rows at their own step
            j = stochastic.float().argmax(1)  # [B]
            rows = torch.arange(chain.shape[0], device=device)
            conditioning = self.head.step_conditioning(buckets[j])
            velocity = self._velocity(enc, chain[rows, j], conditioning)
            t = step_time(j.float(), cfg.num_steps)[:, None, None]
            mean, std = sde_moments(chain[rows, j], velocity, t, cfg.num_steps, cfg.noise_level)
            log_probs.append(self._span_log_prob(chain[rows, j + 1], mean, std))
        else:
            for k in range(cfg.num_steps):
                if not bool(stochastic[:, k].any()):
                    continue
                conditioning = self.head.step_conditioning(buckets[k].expand(chain.shape[0]))
                velocity = self._velocity(enc, chain[:, k], conditioning)
                mean, std = sde_moments(
                    chain[:, k], velocity, step_time(k, cfg.num_steps), cfg.num_steps, cfg.noise_level
                )
                step_log_prob = self._span_log_prob(chain[:, k + 1], mean, std)
                log_probs.append(torch.where(stochastic[:, k], step_log_prob, 0.0))
        return self._combine(chain, stochastic, log_probs), self.value_head(enc.critic_input)

    def _span_log_prob(self, x: torch.Tensor, mean: torch.Tensor, std) -> torch.Tensor:
        return chunk_log_prob(x, mean, std, self.sampler.executed_steps, self.sampler.action_dim)

    def _combine(
        self, chain: torch.Tensor, stochastic: torch.Tensor, log_probs: list[torch.Tensor]
    ) -> torch.Tensor:
        """Per-transition log-probabilities -> the chunk's: their sum (one stochastic step), or with
        `joint_log_prob` the mean of the initial noise density and every stochastic transition."""
        total = torch.zeros(chain.shape[0], device=chain.device)
        for log_prob in log_probs:
            total = total + log_prob
        if not self.sampler.joint_log_prob or not log_probs:
            return total
        initial = self._span_log_prob(chain[:, 0], torch.zeros_like(chain[:, 0]), 1.0)
        return (total + initial) / (1 + stochastic.to(chain.device).sum(1).float())
