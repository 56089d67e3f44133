"""Flow-matching action head of GR00T N1.5 and N1.6 (`action_head.*`; N1.5 spec 3, N1.6 spec 3).

Per-embodiment ("category") MLPs encode the state and the noisy action chunk and decode the DiT output
into a velocity. Token order into the DiT: [1 state | 32 future tokens | 16 action tokens] in N1.5,
[1 state | 50 action tokens] in N1.6. N1.6 differs only through `ActionHeadConfig` options: no VL
self-attention adapter, no future tokens, t = (1 - u) * s, state dropout to a learned `mask_token`,
and the AlternateVLDiT's text / image cross-attention masks (`vl_masks` = (text, image) bool [B, L]).

Embodiment ids are resolved once per call (`resolve_category`): a batch holding a single embodiment
uses the shared weight matrix directly (a plain GEMM, no per-sample weight copies); mixed batches
gather `W[ids]` once per layer call.

Training: `forward` draws the flow-matching noise and time and returns `loss(..., t, noise)`, which
takes them explicitly. Sampling: `denoising_conditionings` (everything that depends on the step
only), `encode_vl`, then `integrate` (cross K/V and state token once, the Euler loop over
`predict_velocity`); a fast sampler calls the same pieces.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from groot.model.config import ActionHeadConfig
from groot.model.dit import DiT, DiTConditioning, KeyValue, SelfAttentionTransformer

Category = int | torch.Tensor  # one embodiment index for the whole batch, or int64 [B]


@dataclass
class StepConditioning:
    """Everything of one denoising step that depends on its timestep bucket alone."""

    dit: DiTConditioning  # AdaLN / output modulations, each [B, inner_dim]
    action_time: torch.Tensor  # the action encoder's timestep sinusoid [B, width] (parameter dtype)


def resolve_category(embodiment_id: torch.Tensor) -> Category:
    """int64 [B] -> a Python int when every sample has the same embodiment, else the tensor itself."""
    first = embodiment_id[:1]
    if bool((embodiment_id == first).all()):
        return int(first.item())
    return embodiment_id


class CategorySpecificLinear(nn.Module):
    """y = x @ W[c] + b[c] with W [C, in, out] (input-major layout, as in the checkpoint)."""

    def __init__(self, num_categories: int, in_dim: int, out_dim: int):
        super().__init__()
        self.W = nn.Parameter(0.02 * torch.randn(num_categories, in_dim, out_dim))
        self.b = nn.Parameter(torch.zeros(num_categories, out_dim))

    def forward(self, x: torch.Tensor, category: Category) -> torch.Tensor:
        """x: [B, T, in] -> [B, T, out]"""
        if isinstance(category, int):
            return torch.matmul(x, self.W[category]) + self.b[category]
        return torch.bmm(x, self.W[category]) + self.b[category][:, None]


class CategorySpecificMLP(nn.Module):
    """layer1 -> ReLU -> layer2, each category-specific."""

    def __init__(self, num_categories: int, in_dim: int, hidden_dim: int, out_dim: int):
        super().__init__()
        self.layer1 = CategorySpecificLinear(num_categories, in_dim, hidden_dim)
        self.layer2 = CategorySpecificLinear(num_categories, hidden_dim, out_dim)

    def forward(self, x: torch.Tensor, category: Category) -> torch.Tensor:
        return self.layer2(F.relu(self.layer1(x, category)), category)


def bucket_sinusoid(timesteps: torch.Tensor, dim: int) -> torch.Tensor:
    """The action encoder's timestep features: [sin, cos] of bucket * exp(-ln(1e4) * k / (dim/2)).
    timesteps: [B] integer buckets -> [B, dim] float32"""
    half = dim // 2
    k = torch.arange(half, dtype=torch.float32, device=timesteps.device)
    angles = timesteps.float()[:, None] * torch.exp(-k * (math.log(10000.0) / half))[None, :]
    return torch.cat([torch.sin(angles), torch.cos(angles)], dim=-1)


class MultiEmbodimentActionEncoder(nn.Module):
    """y = W3(swish(W2([W1(a), sinusoid(bucket)])))."""

    def __init__(self, action_dim: int, width: int, num_categories: int):
        super().__init__()
        self.width = width
        self.W1 = CategorySpecificLinear(num_categories, action_dim, width)
        self.W2 = CategorySpecificLinear(num_categories, 2 * width, width)
        self.W3 = CategorySpecificLinear(num_categories, width, width)

    def time_features(self, timesteps: torch.Tensor) -> torch.Tensor:
        """timesteps: [B] buckets -> sinusoid [B, width] in the parameter dtype"""
        return bucket_sinusoid(timesteps, self.width).to(self.W1.W.dtype)

    def forward(self, actions: torch.Tensor, timesteps: torch.Tensor | None, category: Category,
                time_features: torch.Tensor | None = None) -> torch.Tensor:
        """actions: [B, T, action_dim], timesteps: [B] buckets or their `time_features` [B, width]
        -> [B, T, width]"""
        a = self.W1(actions, category)
        if time_features is None:
            time_features = self.time_features(timesteps)
        tau = time_features.to(a.dtype)[:, None].expand(-1, a.shape[1], -1)
        x = F.silu(self.W2(torch.cat([a, tau], dim=-1), category))
        return self.W3(x, category)


class FlowMatchingActionHead(nn.Module):
    """Backbone features + state -> flow-matching loss (training) or an action chunk (sampling)."""

    def __init__(self, cfg: ActionHeadConfig):
        super().__init__()
        self.cfg = cfg
        width, num_cat = cfg.input_embedding_dim, cfg.max_num_embodiments
        # registration order = the checkpoint's key order
        self.model = DiT(cfg.diffusion_model_cfg)
        self.state_encoder = CategorySpecificMLP(num_cat, cfg.max_state_dim, cfg.hidden_size, width)
        self.action_encoder = MultiEmbodimentActionEncoder(cfg.action_dim, width, num_cat)
        self.action_decoder = CategorySpecificMLP(num_cat, cfg.hidden_size, cfg.hidden_size, cfg.action_dim)
        self.future_tokens = None
        if cfg.num_target_vision_tokens > 0:
            self.future_tokens = nn.Embedding(cfg.num_target_vision_tokens, width)
            nn.init.normal_(self.future_tokens.weight, mean=0.0, std=0.02)
        self.vlln = nn.LayerNorm(cfg.backbone_embedding_dim) if cfg.use_vlln else nn.Identity()
        self.vl_self_attention = (SelfAttentionTransformer(cfg.vl_self_attention_cfg)
                                  if cfg.use_vlln and cfg.use_vl_self_attention else nn.Identity())
        if cfg.add_pos_embed:
            self.position_embedding = nn.Embedding(cfg.max_seq_len, width)
            nn.init.normal_(self.position_embedding.weight, mean=0.0, std=0.02)
        self.mask_token = None  # not in the N1.6 checkpoint: created (0.02 N(0, 1)) when dropout is on
        if cfg.state_dropout_prob > 0:
            self.mask_token = nn.Parameter(0.02 * torch.randn(1, 1, width))
        if cfg.time_sampling not in ("(s-u)/s", "(1-u)*s"):
            raise ValueError(f"ActionHeadConfig.time_sampling: expected '(s-u)/s' or '(1-u)*s', "
                             f"found {cfg.time_sampling!r}")

    # ---- pieces shared by training and sampling ---------------------------------------------------
    def encode_vl(self, features: torch.Tensor) -> torch.Tensor:
        """features: [B, L, backbone_embedding_dim] -> [B, L, backbone_embedding_dim]"""
        return self.vl_self_attention(self.vlln(features))

    def timestep_buckets(self, num_steps: int) -> list[int]:
        """Integer buckets of the Euler steps t_k = k / N (spec 3.6): 0, 250, 500, 750 for N = 4."""
        return [int(k / num_steps * self.cfg.num_timestep_buckets) for k in range(num_steps)]

    def step_conditioning(self, timesteps: torch.Tensor) -> StepConditioning:
        """timesteps: [B] integer buckets -> the step's DiT modulations and action-encoder sinusoid."""
        return StepConditioning(self.model.conditioning(timesteps),
                                self.action_encoder.time_features(timesteps))

    def denoising_conditionings(self, num_steps: int, batch_size: int,
                                device: torch.device | str) -> list[StepConditioning]:
        """One `StepConditioning` per Euler step for a batch of `batch_size` rows."""
        return [self.step_conditioning(torch.full((batch_size,), bucket, dtype=torch.long, device=device))
                for bucket in self.timestep_buckets(num_steps)]

    def cross_masks(self, vl_masks: tuple[torch.Tensor, torch.Tensor] | None) -> list[torch.Tensor] | None:
        """vl_masks: (text, image) bool [B, L] or None -> the DiT's per-cross-block key masks or None"""
        return None if vl_masks is None else self.model.cross_masks(*vl_masks)

    def predict_velocity(self, state_tokens: torch.Tensor, actions: torch.Tensor, category: Category,
                         cross_kv: list[KeyValue], conditioning: StepConditioning,
                         cross_masks: list[torch.Tensor] | None = None) -> torch.Tensor:
        """state_tokens [B, 1, W], actions [B, T, A], cross_kv: `model.cross_kv(vl)` of the VL tokens,
        conditioning: `step_conditioning(timesteps)`, cross_masks: `cross_masks(vl_masks)`
        -> velocity [B, T, A]. Only the action rows are projected and decoded (rows are independent)."""
        action_tokens = self.action_encoder(actions, None, category, conditioning.action_time)  # [B, T, W]
        if self.cfg.add_pos_embed:
            action_tokens = action_tokens + self.position_embedding.weight[: actions.shape[1]]
        parts = [state_tokens, action_tokens]
        if self.future_tokens is not None:
            future = self.future_tokens.weight[None].expand(actions.shape[0], -1, -1)  # [B, 32, W]
            parts.insert(1, future.to(action_tokens.dtype))
        out = self.model.transform(torch.cat(parts, dim=1), cross_kv, conditioning.dit,
                                   output_tokens=actions.shape[1], cross_masks=cross_masks)  # [B, T, hidden]
        return self.action_decoder(out, category)

    def sample_time(self, batch_size: int, device: torch.device) -> torch.Tensor:
        """t = (s - u) / s (N1.5) or (1 - u) * s (N1.6) with u ~ Beta(alpha, beta), drawn from the global
        CPU RNG. -> [B] float32"""
        beta = torch.distributions.Beta(torch.tensor(self.cfg.noise_beta_alpha),
                                        torch.tensor(self.cfg.noise_beta_beta))
        u = beta.sample((batch_size,))
        s = self.cfg.noise_s
        t = (s - u) / s if self.cfg.time_sampling == "(s-u)/s" else (1 - u) * s
        return t.to(device)

    def drop_state(self, state_tokens: torch.Tensor) -> torch.Tensor:
        """Each sample's state token replaced by `mask_token` with probability state_dropout_prob (the
        training loss only; drawn from the tokens' device RNG). [B, 1, W] -> [B, 1, W]"""
        if self.mask_token is None:
            return state_tokens
        draw = torch.rand(state_tokens.shape[0], 1, 1, device=state_tokens.device)
        dropped = draw < self.cfg.state_dropout_prob
        return torch.where(dropped, self.mask_token.to(state_tokens.dtype), state_tokens)

    def time_bucket(self, t: torch.Tensor) -> torch.Tensor:
        """t in [-0.001, 1] -> int64 bucket, truncated toward zero. [B] -> [B]"""
        return (t * self.cfg.num_timestep_buckets).long()

    # ---- training ------------------------------------------------------------------------------------
    def loss(self, features: torch.Tensor, state: torch.Tensor, action: torch.Tensor, mask: torch.Tensor,
             category: Category, t: torch.Tensor, noise: torch.Tensor,
             vl_masks: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        """features [B, L, D], state [B, 1, 64], action / mask [B, 16, 32], t [B] flow-matching times,
        noise [B, 16, 32] (action's dtype), vl_masks (N1.6) -> scalar loss: masked MSE between the
        predicted and the true velocity (spec 3.5). State dropout applies here whatever the module's
        mode, as in the original N1.6 loss."""
        vl = self.encode_vl(features)
        state_tokens = self.drop_state(self.state_encoder(state, category))  # [B, 1, W]
        t = t.to(action.dtype)[:, None, None]  # [B, 1, 1]
        noisy = (1 - t) * noise + t * action
        target = action - noise
        conditioning = self.step_conditioning(self.time_bucket(t[:, 0, 0]))
        pred = self.predict_velocity(state_tokens, noisy, category, self.model.cross_kv(vl), conditioning,
                                     self.cross_masks(vl_masks))
        mask = mask.to(torch.float32)
        squared = F.mse_loss(pred.float(), target.float(), reduction="none") * mask
        return squared.sum() / mask.sum()

    def forward(self, features: torch.Tensor, state: torch.Tensor, action: torch.Tensor,
                action_mask: torch.Tensor, embodiment_id: torch.Tensor, t: torch.Tensor | None = None,
                noise: torch.Tensor | None = None,
                vl_masks: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        """features [B, L, D], state [B, 1, 64], action / action_mask [B, 16, 32], embodiment_id [B]
        -> `loss`. The noise (standard normal on action's device, in its dtype) and then the times
        (`sample_time`) are drawn here unless given."""
        category = resolve_category(embodiment_id)
        if noise is None:
            noise = torch.randn(action.shape, device=action.device, dtype=action.dtype)
        if t is None:
            t = self.sample_time(action.shape[0], action.device)
        return self.loss(features, state, action, action_mask, category, t, noise, vl_masks)

    # ---- inference -----------------------------------------------------------------------------------
    def sample(self, features: torch.Tensor, state: torch.Tensor, embodiment_id: torch.Tensor,
               num_steps: int | None = None, noise: torch.Tensor | None = None,
               generator: torch.Generator | None = None,
               vl_masks: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        """Euler integration from noise (t=0) to data (t=1) in `num_steps` steps (spec 3.6).
        features [B, L, D], state [B, 1, 64], embodiment_id [B] -> normalized actions [B, 16, 32].
        VL features, state tokens and the DiT's cross-attention K/V are computed once."""
        steps = num_steps or self.cfg.num_inference_timesteps
        batch = features.shape[0]
        category = resolve_category(embodiment_id)
        vl = self.encode_vl(features)
        if noise is None:
            noise = torch.randn((batch, self.cfg.action_horizon, self.cfg.action_dim), dtype=vl.dtype,
                                device=vl.device, generator=generator)
        conditionings = self.denoising_conditionings(steps, batch, vl.device)
        return self.integrate(vl, state, noise, category, conditionings, vl_masks)

    def integrate(self, vl: torch.Tensor, state: torch.Tensor, noise: torch.Tensor, category: Category,
                  conditionings: list[StepConditioning],
                  vl_masks: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        """Euler flow integration from `noise` with one step per conditioning; cross-attention K/V and
        the state token are computed once. vl [B, L, D] (from `encode_vl`), state [B, 1, 64],
        noise [B, T, A] -> normalized actions [B, T, A] in noise's dtype (a_k + (1/N) v, as in the
        original)"""
        cross_kv, cross_masks = self.model.cross_kv(vl), self.cross_masks(vl_masks)
        state_tokens = self.state_encoder(state, category)  # [B, 1, W]
        actions = noise
        for conditioning in conditionings:
            velocity = self.predict_velocity(state_tokens, actions, category, cross_kv, conditioning,
                                             cross_masks)
            actions = actions + (1.0 / len(conditionings)) * velocity
        return actions
