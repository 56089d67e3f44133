"""Action-head building blocks: sinusoids, modulation orders, category weights, K/V reuse, loss, sampling."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from groot.model.action_head import (
    CategorySpecificLinear,
    FlowMatchingActionHead,
    bucket_sinusoid,
    resolve_category,
)
from groot.model.config import preset_config
from groot.model.dit import AdaLayerNorm, DiT, timestep_sinusoid


@pytest.fixture(scope="module")
def head() -> FlowMatchingActionHead:
    torch.manual_seed(0)
    return FlowMatchingActionHead(preset_config("tiny").action_head_cfg).eval()


def _inputs(head: FlowMatchingActionHead, batch: int = 2, length: int = 7, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    cfg = head.cfg
    features = torch.randn(batch, length, cfg.backbone_embedding_dim, generator=g)
    state = torch.randn(batch, 1, cfg.max_state_dim, generator=g)
    action = torch.randn(batch, cfg.action_horizon, cfg.action_dim, generator=g)
    return features, state, action


def test_dit_timestep_sinusoid_is_cos_then_sin_with_divisor_half_minus_one():
    bucket = 250.0
    out = timestep_sinusoid(torch.tensor([bucket]), 256)[0]
    last_freq = math.exp(-math.log(10000.0) * 127 / 127)
    assert out.shape == (256,)
    assert out[0].item() == pytest.approx(math.cos(bucket), abs=1e-5)
    assert out[127].item() == pytest.approx(math.cos(bucket * last_freq), abs=1e-5)
    assert out[128].item() == pytest.approx(math.sin(bucket), abs=1e-5)
    assert out[1].item() == pytest.approx(math.cos(bucket * math.exp(-math.log(10000.0) / 127)), abs=1e-5)


def test_action_sinusoid_is_sin_then_cos_with_divisor_half():
    bucket = 750.0
    out = bucket_sinusoid(torch.tensor([bucket]), 1536)[0]
    assert out[0].item() == pytest.approx(math.sin(bucket), abs=1e-4)
    assert out[768].item() == pytest.approx(math.cos(bucket), abs=1e-4)
    freq = math.exp(-math.log(10000.0) * 1 / 768)
    assert out[1].item() == pytest.approx(math.sin(bucket * freq), abs=1e-4)


def test_ada_layer_norm_chunks_scale_before_shift():
    norm = AdaLayerNorm(4)
    torch.nn.init.zeros_(norm.linear.weight)
    scale, shift = torch.tensor([1.0, 2.0, 3.0, 4.0]), torch.tensor([10.0, 20.0, 30.0, 40.0])
    with torch.no_grad():
        norm.linear.bias.copy_(torch.cat([scale, shift]))
    x = torch.randn(1, 3, 4)
    expected = torch.nn.functional.layer_norm(x, (4,), eps=1e-5) * (1 + scale) + shift
    torch.testing.assert_close(norm(x, norm.modulation(torch.zeros(1, 4))), expected)


def test_dit_output_modulation_chunks_shift_before_scale():
    cfg = preset_config("tiny").action_head_cfg.diffusion_model_cfg
    cfg.num_layers, cfg.output_dim = 0, cfg.inner_dim
    dit = DiT(cfg)
    dim = cfg.inner_dim
    shift, scale = torch.linspace(-1, 1, dim), torch.linspace(0, 2, dim)
    with torch.no_grad():
        dit.proj_out_1.weight.zero_()
        dit.proj_out_1.bias.copy_(torch.cat([shift, scale]))
        dit.proj_out_2.weight.copy_(torch.eye(dim))
        dit.proj_out_2.bias.zero_()
    x = torch.randn(2, 5, dim)
    expected = torch.nn.functional.layer_norm(x, (dim,), eps=1e-6) * (1 + scale) + shift
    out = dit(x, torch.tensor([0, 999]), vl_features=torch.randn(2, 3, cfg.cross_attention_dim))
    torch.testing.assert_close(out, expected)


def test_even_blocks_cross_attend_and_odd_blocks_self_attend(head):
    cfg = head.cfg.diffusion_model_cfg
    for i, block in enumerate(head.model.transformer_blocks):
        kv_in = block.attn1.to_k.in_features
        assert kv_in == (cfg.cross_attention_dim if i % 2 == 0 else cfg.inner_dim), i
    assert head.model.cross_block_ids == list(range(0, cfg.num_layers, 2))


def test_category_linear_uses_input_major_weights_per_sample():
    layer = CategorySpecificLinear(3, 4, 5)
    with torch.no_grad():
        layer.b.normal_()
    x = torch.randn(2, 6, 4)
    ids = torch.tensor([2, 0])
    out = layer(x, ids)
    for row, cat in enumerate(ids.tolist()):
        torch.testing.assert_close(out[row], x[row] @ layer.W[cat] + layer.b[cat])


def test_single_embodiment_fast_path_matches_gathered_weights():
    layer = CategorySpecificLinear(4, 8, 6)
    x = torch.randn(3, 5, 8)
    ids = torch.tensor([1, 1, 1])
    assert resolve_category(ids) == 1
    assert isinstance(resolve_category(torch.tensor([1, 2, 1])), torch.Tensor)
    torch.testing.assert_close(layer(x, 1), layer(x, ids), rtol=0, atol=1e-6)


def test_time_bucket_truncates_toward_zero(head):
    t = torch.tensor([-0.0009, 0.0, 0.2499, 0.25, 0.9999, 1.0])
    assert head.time_bucket(t).tolist() == [0, 0, 249, 250, 999, 1000]


def test_time_sampling_follows_shifted_beta(head):
    torch.manual_seed(0)
    t = head.sample_time(20000, torch.device("cpu"))
    s = head.cfg.noise_s
    assert t.min() >= (s - 1) / s - 1e-6 and t.max() <= 1.0
    mean_u = head.cfg.noise_beta_alpha / (head.cfg.noise_beta_alpha + head.cfg.noise_beta_beta)
    assert t.mean().item() == pytest.approx((s - mean_u) / s, abs=0.01)
    assert (t < 0.5).float().mean() > 0.6  # density is highest at the noisy end


def test_cross_kv_precompute_equals_recomputing(head):
    features, state, action = _inputs(head)
    vl = head.encode_vl(features)
    tokens = torch.randn(2, 1 + head.cfg.num_target_vision_tokens + head.cfg.action_horizon,
                         head.cfg.input_embedding_dim)
    steps = torch.tensor([250, 500])
    with torch.no_grad():
        direct = head.model(tokens, steps, vl)
        cross_kv = head.model.cross_kv(vl)
        reused = [head.model.transform(tokens, cross_kv, head.model.conditioning(steps)) for _ in range(2)]
    assert torch.equal(direct, reused[0]) and torch.equal(direct, reused[1])


def test_sample_equals_euler_loop_recomputing_everything_each_step(head):
    features, state, _ = _inputs(head)
    embodiment = torch.tensor([31, 31])
    noise = torch.randn(2, head.cfg.action_horizon, head.cfg.action_dim)
    steps = 3
    with torch.no_grad():
        sampled = head.sample(features, state, embodiment, num_steps=steps, noise=noise)
        actions = noise
        for k in range(steps):
            buckets = torch.full((2,), int(k / steps * 1000))
            cross_kv = head.model.cross_kv(head.encode_vl(features))
            velocity = head.predict_velocity(head.state_encoder(state, embodiment), actions, embodiment,
                                             cross_kv, head.step_conditioning(buckets))
            actions = actions + velocity / steps
    torch.testing.assert_close(sampled, actions, rtol=0, atol=1e-6)
    assert buckets.tolist() == [666, 666]


def test_sampling_is_deterministic_for_fixed_noise_or_generator(head):
    features, state, _ = _inputs(head)
    embodiment = torch.tensor([5, 7])
    noise = torch.randn(2, head.cfg.action_horizon, head.cfg.action_dim)
    with torch.no_grad():
        a = head.sample(features, state, embodiment, noise=noise)
        b = head.sample(features, state, embodiment, noise=noise.clone())
        c = head.sample(features, state, embodiment, generator=torch.Generator().manual_seed(3))
        d = head.sample(features, state, embodiment, generator=torch.Generator().manual_seed(3))
        e = head.sample(features, state, embodiment, generator=torch.Generator().manual_seed(4))
    assert a.shape == (2, head.cfg.action_horizon, head.cfg.action_dim)
    assert torch.equal(a, b) and torch.equal(c, d)
    assert not torch.equal(c, e)


def test_loss_ignores_predictions_on_padded_action_dims(head):
    features, state, action = _inputs(head)
    embodiment = torch.tensor([31, 31])
    mask = torch.zeros_like(action, dtype=torch.bool)
    mask[..., :7] = True

    def loss(model, m):
        torch.manual_seed(123)
        with torch.no_grad():
            return model(features, state, action, m, embodiment)

    masked = loss(head, mask)
    corrupted = copy.deepcopy(head)
    with torch.no_grad():
        corrupted.action_decoder.layer2.b[:, 7:] += 1e3  # only the padded dims' velocity changes
    assert torch.isfinite(masked) and masked > 0
    assert torch.equal(masked, loss(corrupted, mask))
    assert loss(corrupted, torch.ones_like(mask)) > 100 * masked


def test_loss_is_mean_over_unmasked_entries(head):
    """A head whose velocity prediction is exactly zero has loss = mean((a - eps)^2) over real dims."""
    features, state, action = _inputs(head)
    with torch.no_grad():
        head_zero = FlowMatchingActionHead(head.cfg).eval()
        head_zero.action_decoder.layer2.W.zero_()
        head_zero.action_decoder.layer2.b.zero_()
    mask = torch.zeros_like(action, dtype=torch.bool)
    mask[..., :5] = True
    torch.manual_seed(7)
    with torch.no_grad():
        loss = head_zero(features, state, action, mask, torch.tensor([0, 1]))
    torch.manual_seed(7)
    noise = torch.randn(action.shape)
    expected = ((action - noise)[..., :5] ** 2).mean()
    torch.testing.assert_close(loss, expected)


def test_forward_draws_noise_then_time_and_returns_the_loss_at_them(head):
    """`forward` = `loss` at a standard-normal noise and a `sample_time` draw, in that order."""
    features, state, action = _inputs(head)
    mask = torch.ones_like(action, dtype=torch.bool)
    embodiment = torch.tensor([3, 3])
    with torch.no_grad():
        torch.manual_seed(5)
        drawn = head(features, state, action, mask, embodiment)
        torch.manual_seed(5)
        noise = torch.randn(action.shape)
        t = head.sample_time(2, torch.device("cpu"))
        explicit = head.loss(features, state, action, mask, 3, t, noise)
        other_t = head.loss(features, state, action, mask, 3, 1 - t, noise)
        given = head(features, state, action, mask, embodiment, t=t, noise=noise)
    assert torch.equal(drawn, explicit) and torch.equal(given, explicit)
    assert not torch.equal(other_t, explicit)
