"""Graph-safe denoising stage of GR00T N1.5 built from the action head's own modules, for static shapes.

The backbone stage needs nothing here: `EagleBackbone.forward` is free of host synchronisation and is
captured as is (the engine checks the image-token count on the host). The action head's
`FlowMatchingActionHead.sample` is rearranged - same parameters, same operations - so the whole
denoising loop can be captured as one CUDA graph and so that padding a prompt up to a length bucket
leaves every real token's result unchanged:

- prompts are right-extended to the bucket: the LLM is causal, so real tokens never see the extension;
  the VL self-attention and the DiT cross-attention get an additive key mask that hides it (the
  eager head has no mask; batch left-padding inside the processor's longest prompt stays visible, as
  in the original);
- everything that depends only on the denoising step, not on the observation, is computed once per
  step count (`DenoisingConstants`): the AdaLN scale/shift of every DiT block, the output modulation,
  the action encoder's timestep features, the position embeddings and the future tokens;
- cross-attention K/V, VL features and the state token are computed once per observation.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from groot.model.action_head import Category, FlowMatchingActionHead, bucket_sinusoid
from groot.model.dit import Attention, BasicTransformerBlock, KeyValue


def key_padding_bias(valid_length: int, bucket_length: int, batch: int, dtype: torch.dtype,
                     device: torch.device | str = "cpu") -> torch.Tensor:
    """Additive attention bias hiding keys at positions >= valid_length. -> [B, 1, 1, L_bucket]"""
    bias = torch.zeros(batch, 1, 1, bucket_length, dtype=dtype, device=device)
    bias[..., valid_length:] = float("-inf")
    return bias


def _attention(attn: Attention, x: torch.Tensor, kv: KeyValue, bias: torch.Tensor | None) -> torch.Tensor:
    """`Attention.forward` with given K/V and an optional additive key bias. x [B, N, dim] -> [B, N, dim]"""
    b, n, _ = x.shape
    q = attn.to_q(x).view(b, n, attn.heads, -1).transpose(1, 2)  # [B, H, N, hd]
    out = F.scaled_dot_product_attention(q, kv[0], kv[1], attn_mask=bias)
    return attn.to_out[0](out.transpose(1, 2).flatten(2))


def _feed_forward(block: BasicTransformerBlock, x: torch.Tensor) -> torch.Tensor:
    return x + block.ff(block.norm3(x))


def encode_vl(head: FlowMatchingActionHead, features: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """vl_self_attention(vlln(features)) with padded keys hidden. features [B, L, D] -> [B, L, D]"""
    x = head.vlln(features)
    for block in head.vl_self_attention.transformer_blocks:
        h = block.norm1(x)
        x = x + _attention(block.attn1, h, block.attn1.project_kv(h), bias)
        x = _feed_forward(block, x)
    return x


@dataclass
class DenoisingConstants:
    """Everything of the denoising loop that depends on the step only, for one step count."""

    num_steps: int
    block_norms: list[list[tuple[torch.Tensor, torch.Tensor]]]  # [step][block] (1 + scale, shift), [D]
    output_norms: list[tuple[torch.Tensor, torch.Tensor]]  # [step] (1 + scale, shift), [D]
    action_time_features: list[torch.Tensor]  # [step] [1, 1, W]
    position: torch.Tensor  # [T, W]
    future: torch.Tensor  # [1, 32, W]

    @classmethod
    @torch.no_grad()
    def build(cls, head: FlowMatchingActionHead, num_steps: int) -> DenoisingConstants:
        dit, cfg = head.model, head.cfg
        dtype = head.future_tokens.weight.dtype
        block_norms, output_norms, time_features = [], [], []
        for k in range(num_steps):
            bucket = int(k / num_steps * cfg.num_timestep_buckets)
            timestep = torch.full((1,), bucket, dtype=torch.long, device=head.future_tokens.weight.device)
            temb = F.silu(dit.timestep_encoder(timestep))  # [1, D]
            per_block = []
            for block in dit.transformer_blocks:
                scale, shift = block.norm1.linear(temb).chunk(2, dim=-1)
                per_block.append(((1 + scale)[0], shift[0]))
            block_norms.append(per_block)
            shift, scale = dit.proj_out_1(temb).chunk(2, dim=-1)
            output_norms.append(((1 + scale)[0], shift[0]))
            time_features.append(bucket_sinusoid(timestep, head.action_encoder.width).to(dtype)[:, None])
        future = head.future_tokens.weight  # [32, W]
        position = (head.position_embedding.weight[: cfg.action_horizon].clone() if cfg.add_pos_embed
                    else future.new_zeros(cfg.action_horizon, future.shape[1]))
        return cls(num_steps, block_norms, output_norms, time_features, position, future[None].clone())


def _encode_actions(head: FlowMatchingActionHead, actions: torch.Tensor, time_features: torch.Tensor,
                    position: torch.Tensor, category: Category) -> torch.Tensor:
    """`MultiEmbodimentActionEncoder` with precomputed timestep features, plus position embedding.
    actions [B, T, A] -> [B, T, W]"""
    encoder = head.action_encoder
    a = encoder.W1(actions, category)
    tau = time_features.expand(a.shape[0], a.shape[1], -1)
    x = F.silu(encoder.W2(torch.cat([a, tau], dim=-1), category))
    return encoder.W3(x, category) + position


def _dit_velocity(head: FlowMatchingActionHead, consts: DenoisingConstants, step: int,
                  prefix: torch.Tensor, actions: torch.Tensor, cross_kv: list[KeyValue],
                  bias: torch.Tensor, category: Category) -> torch.Tensor:
    """prefix [B, 33, W] (state token + future tokens), actions [B, T, A] -> velocity [B, T, A]"""
    dit = head.model
    action_tokens = _encode_actions(head, actions, consts.action_time_features[step], consts.position,
                                    category)
    x = torch.cat([prefix, action_tokens], dim=1)  # [B, 49, W]
    kv_of_block = dict(zip(dit.cross_block_ids, cross_kv, strict=True))
    for i, block in enumerate(dit.transformer_blocks):
        weight, shift = consts.block_norms[step][i]
        h = F.layer_norm(x, (x.shape[-1],), weight, shift, block.norm1.norm.eps)
        kv = kv_of_block.get(i)
        if kv is None:
            x = x + _attention(block.attn1, h, block.attn1.project_kv(h), None)
        else:
            x = x + _attention(block.attn1, h, kv, bias)
        x = _feed_forward(block, x)
    horizon = actions.shape[1]
    weight, shift = consts.output_norms[step]
    x = F.layer_norm(x[:, -horizon:], (x.shape[-1],), weight, shift, dit.norm_out.eps)
    return head.action_decoder(dit.proj_out_2(x), category)  # rows are independent: decode the actions only


def denoise(head: FlowMatchingActionHead, consts: DenoisingConstants, features: torch.Tensor,
            bias: torch.Tensor, state: torch.Tensor, noise: torch.Tensor, category: Category) -> torch.Tensor:
    """Euler flow integration (spec 3.6) from `noise`. features [B, L, D], bias [B, 1, 1, L],
    state [B, 1, 64], noise [B, T, A] -> normalized actions [B, T, A]"""
    vl = encode_vl(head, features, bias)
    cross_kv = head.model.precompute_cross_kv(vl)
    state_tokens = head.state_encoder(state, category)  # [B, 1, W]
    prefix = torch.cat([state_tokens, consts.future.expand(state.shape[0], -1, -1).to(state_tokens.dtype)], 1)
    actions = noise
    for k in range(consts.num_steps):
        velocity = _dit_velocity(head, consts, k, prefix, actions, cross_kv, bias, category)
        actions = actions + (1.0 / consts.num_steps) * velocity
    return actions
