"""Reference modules from `transformers` for the backbone parity tests.

Every parameter of a reference is randomised (transformers' own init leaves norms at 1 and biases at 0,
which would hide a misplaced norm or bias): N(0, 0.1), plus 1 for norm scales so activations keep unit
size and a 1e-4 tolerance stays meaningful.
"""

from __future__ import annotations

import pytest
import torch

from groot.model.config import LLMConfig, VisionConfig

transformers = pytest.importorskip("transformers")


def randomise_(module: torch.nn.Module, seed: int) -> torch.nn.Module:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            is_norm_scale = "norm" in name.rsplit(".", 2)[-2] and name.endswith(".weight")
            p.copy_(torch.randn(p.shape, generator=g) * 0.1 + (1.0 if is_norm_scale else 0.0))
    return module


def build_reference_qwen3(llm: LLMConfig, dropped_layers: int = 2, seed: int = 0) -> torch.nn.Module:
    """transformers' Qwen3Model built with `llm.num_layers + dropped_layers` layers, then cut to the first
    `llm.num_layers` by popping layers off the end, as the release truncates the LLM (config unchanged)."""
    hf_cfg = transformers.Qwen3Config(
        vocab_size=llm.vocab_size, hidden_size=llm.hidden_size, intermediate_size=llm.intermediate_size,
        num_hidden_layers=llm.num_layers + dropped_layers, num_attention_heads=llm.num_heads,
        num_key_value_heads=llm.num_kv_heads, head_dim=llm.head_dim, rms_norm_eps=llm.rms_norm_eps,
        rope_theta=llm.rope_theta, max_position_embeddings=128, attention_bias=False,
        tie_word_embeddings=llm.tie_word_embeddings)
    ref = randomise_(transformers.Qwen3Model(hf_cfg), seed).eval()
    for _ in range(dropped_layers):
        ref.layers.pop(-1)
    return ref


def build_reference_siglip2(vision: VisionConfig, seed: int = 0) -> torch.nn.Module:
    """transformers' Siglip2VisionModel with the tower sizes of `vision` (a SigLIP2-style config)."""
    hf_cfg = transformers.Siglip2VisionConfig(
        hidden_size=vision.hidden_size, intermediate_size=vision.intermediate_size,
        num_hidden_layers=vision.num_layers, num_attention_heads=vision.num_heads,
        patch_size=vision.patch_size, num_patches=vision.num_patches, layer_norm_eps=vision.layer_norm_eps,
        hidden_act="gelu_pytorch_tanh", vision_use_head=vision.with_pooling_head)
    return randomise_(transformers.Siglip2VisionModel(hf_cfg), seed).eval()


@pytest.fixture
def randomise():
    return randomise_


@pytest.fixture
def reference_qwen3():
    return build_reference_qwen3


@pytest.fixture
def reference_siglip2():
    return build_reference_siglip2
