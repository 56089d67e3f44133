"""Our SigLIP / Qwen3 equal transformers' reference modules given the same random weights."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from groot.model.config import LLMConfig, VisionConfig, preset_config
from groot.model.qwen3 import Qwen3LanguageModel
from groot.model.siglip import SiglipVisionModel

transformers = pytest.importorskip("transformers")

VISION = VisionConfig(hidden_size=64, intermediate_size=96, num_layers=2, num_heads=4, patch_size=14,
                      image_size=56, layer_norm_eps=1e-6, with_pooling_head=True)
DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(),
                                                               reason="needs a CUDA GPU"))]
LLM = LLMConfig(vocab_size=300, hidden_size=64, intermediate_size=96, num_layers=2, num_heads=4,
                num_kv_heads=2, head_dim=32, rms_norm_eps=1e-6, rope_theta=1_000_000.0)
N16_LLM = dataclasses.replace(preset_config("n1.6-tiny").backbone_cfg.llm, tie_word_embeddings=False)


def _reference_siglip() -> torch.nn.Module:
    hf_cfg = transformers.SiglipVisionConfig(
        hidden_size=VISION.hidden_size, intermediate_size=VISION.intermediate_size,
        num_hidden_layers=VISION.num_layers, num_attention_heads=VISION.num_heads,
        patch_size=VISION.patch_size, image_size=VISION.image_size, layer_norm_eps=VISION.layer_norm_eps,
        hidden_act="gelu_pytorch_tanh", vision_use_head=True)
    torch.manual_seed(0)
    ref = transformers.SiglipVisionModel(hf_cfg).eval()
    with torch.no_grad():  # HF's own init leaves some tensors at 0 / 1; randomise everything
        for p in ref.parameters():
            p.normal_(0.0, 0.1)
    return ref


@pytest.mark.parametrize("device", DEVICES)
def test_siglip_matches_transformers(device):
    ref = _reference_siglip().to(device)
    ours = SiglipVisionModel(VISION).eval().to(device)
    # transformers 5 names the transformer's tensors without the wrapper prefix; the checkpoint has it
    state = {k if k.startswith("vision_model.") else f"vision_model.{k}": v
             for k, v in ref.state_dict().items()}
    ours.load_state_dict(state, strict=True)
    pixels = (torch.rand(3, 3, VISION.image_size, VISION.image_size) * 2 - 1).to(device)
    with torch.no_grad():
        expected = ref(pixel_values=pixels)
        got = ours(pixels)
        pooled = ours.vision_model.head(got)
    assert got.shape == (3, VISION.num_patches, VISION.hidden_size)
    tol = 1e-4 if device == "cpu" else 1e-3  # GPU kernels (TF32 convolutions) differ slightly
    assert (got - expected.last_hidden_state).abs().max() < tol
    assert (pooled - expected.pooler_output).abs().max() < tol


@pytest.mark.parametrize("llm", [LLM, N16_LLM], ids=["n1.5-style", "n1.6-tiny-untied"])
@pytest.mark.parametrize("device", DEVICES)
def test_qwen3_matches_transformers_with_left_padding(device, llm, reference_qwen3):
    """The kept layers + final norm equal transformers' Qwen3Model cut to the same layers by popping
    (the release's truncation); tied (N1.5) and untied (N1.6-3B) lm_head layouts both load."""
    ref = reference_qwen3(llm).to(device)
    ours = Qwen3LanguageModel(llm).eval().to(device)
    state = {f"model.{k}": v for k, v in ref.state_dict().items()}
    state["lm_head.weight"] = (state["model.embed_tokens.weight"] if llm.tie_word_embeddings
                               else torch.randn(llm.vocab_size, llm.hidden_size))
    ours.load_state_dict(state, strict=True)
    tied = ours.lm_head.weight.data_ptr() == ours.model.embed_tokens.weight.data_ptr()
    assert tied == llm.tie_word_embeddings

    g = torch.Generator().manual_seed(1)
    ids = torch.randint(0, llm.vocab_size, (3, 11), generator=g)
    mask = torch.ones_like(ids)
    mask[1, :4] = 0  # left padding
    mask[2, :10] = 0  # only the last token is real
    ids, mask = ids.to(device), mask.to(device)
    with torch.no_grad():
        out = ref(input_ids=ids, attention_mask=mask, output_hidden_states=True)
        expected = out.last_hidden_state
        got = ours(ours.model.embed_tokens(ids), mask)
        unpadded = ours(ours.model.embed_tokens(ids[:1]))  # causal fast path, no mask
    real = mask.bool()
    assert len(ref.layers) == llm.num_layers
    assert torch.equal(out.hidden_states[-1], expected)  # backbone_features: the final-norm output
    assert got.shape == (3, 11, llm.hidden_size)
    tol = 1e-4 if device == "cpu" else 1e-3
    assert (got[real] - expected[real]).abs().max() < tol
    assert torch.isfinite(got).all()  # pad rows are fully masked: they must not become NaN
    assert (unpadded[0] - expected[0]).abs().max() < tol


def test_qwen3_pad_rows_depend_only_on_their_token():
    model = Qwen3LanguageModel(LLM).eval()
    g = torch.Generator().manual_seed(2)
    ids = torch.randint(0, LLM.vocab_size, (2, 9), generator=g)
    ids[:, :3] = 7  # same pad token in both rows, different real tokens afterwards
    mask = torch.ones_like(ids)
    mask[:, :3] = 0
    with torch.no_grad():
        out = model(model.model.embed_tokens(ids), mask)
    assert torch.allclose(out[0, :3], out[1, :3], atol=1e-6)
    assert torch.allclose(out[0, 0], out[0, 2], atol=1e-6)
