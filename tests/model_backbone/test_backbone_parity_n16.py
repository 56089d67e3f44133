"""GR00T N1.6 backbone blocks equal transformers' classes and the spec's formulas (fp32, CPU).

Weight names, groot -> transformers (identical below the prefixes):
- vision tower: `vision_model.vision_model.<rest>` (our `SiglipVisionModel`: `vision_model.<rest>`) ->
  `Siglip2VisionModel.<rest>`: `embeddings.patch_embedding` (Linear 3*p*p -> C),
  `embeddings.position_embedding`, `encoder.layers.<i>.{layer_norm1, self_attn.{q,k,v,out}_proj,
  layer_norm2, mlp.fc1, mlp.fc2}`, `post_layernorm`, `head.*` (pooling head, when built).
- LLM: `language_model.model.<rest>` -> `Qwen3Model.<rest>` (`embed_tokens`, `layers.<i>.*`, `norm`);
  `language_model.lm_head` has no counterpart.
- `mlp1` has no transformers class: it is checked against the spec's formula (N1.6 spec 2.3).
transformers takes pixels already patchified, [B, N, p*p*3] in (row-in-patch, col-in-patch, channel)
order, with `spatial_shapes` [B, 2] (patch rows, cols) and `pixel_attention_mask` [B, N].
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from groot.model.config import VisionConfig, preset_config
from groot.model.eagle import EagleBlock2ABackbone, build_projector, pixel_unshuffle_tokens
from groot.model.siglip import SiglipVisionModel

siglip2_processing = pytest.importorskip("transformers.models.siglip2.image_processing_pil_siglip2")

TOL = 1e-4
# 6 x 6 learned positions: 84 x 84 images use the table as is, others resize it (up, down or both)
VISION = VisionConfig(hidden_size=64, intermediate_size=96, num_layers=3, num_heads=4, patch_size=14,
                      image_size=84, layer_norm_eps=1e-6, with_pooling_head=True,
                      linear_patch_embedding=True, native_resolution=True)
N16_TINY = preset_config("n1.6-tiny").backbone_cfg


def siglip2_inputs(images: list[torch.Tensor], patch: int) -> dict[str, torch.Tensor]:
    """Images [3, H_i, W_i] -> transformers' Siglip2 inputs, patchified and padded by its own processor
    helpers: pixel_values [B, N_max, p*p*3], pixel_attention_mask [B, N_max], spatial_shapes [B, 2]."""
    n_max = max((im.shape[1] // patch) * (im.shape[2] // patch) for im in images)
    padded = [siglip2_processing.pad_along_first_dim(
        siglip2_processing.convert_image_to_patches(im.numpy(), patch), n_max) for im in images]
    return {"pixel_values": torch.from_numpy(np.stack([p for p, _ in padded])),
            "pixel_attention_mask": torch.from_numpy(np.stack([m for _, m in padded])).long(),
            "spatial_shapes": torch.tensor([[im.shape[1] // patch, im.shape[2] // patch] for im in images])}


def tower_pair(reference_siglip2, vision: VisionConfig) -> tuple[torch.nn.Module, SiglipVisionModel]:
    """transformers' tower with random weights and ours loaded from it by the name mapping above."""
    ref = reference_siglip2(vision)
    ours = SiglipVisionModel(vision).eval()
    ours.load_state_dict({f"vision_model.{k}": v for k, v in ref.state_dict().items()}, strict=True)
    return ref, ours


@pytest.mark.parametrize("size", [(84, 84), (56, 56), (56, 84), (112, 56)],
                         ids=["table-as-is", "square-down", "non-square", "up-and-down"])
def test_siglip2_tower_matches_transformers(size, reference_siglip2):
    ref, ours = tower_pair(reference_siglip2, VISION)
    pixels = torch.rand(2, 3, *size, generator=torch.Generator().manual_seed(3)) * 2 - 1
    with torch.no_grad():
        expected = ref(**siglip2_inputs(list(pixels), VISION.patch_size))
        got = ours(pixels)
        pooled = ours.vision_model.head(got)
    assert got.shape == (2, size[0] * size[1] // 14**2, VISION.hidden_size)
    assert (got - expected.last_hidden_state).abs().max() < TOL
    assert (pooled - expected.pooler_output).abs().max() < TOL


def test_siglip2_position_resize_is_antialiased_bilinear(reference_siglip2):
    """The resize of the learned positions is F.interpolate(bilinear, align_corners=False,
    antialias=True) of the square table, as transformers computes it for its own padded batches."""
    ref, ours = tower_pair(reference_siglip2, VISION)
    table = ref.embeddings.position_embedding.weight  # [36, C]
    square = table.T.reshape(1, -1, 6, 6)
    for grid in [(4, 4), (4, 6), (8, 4), (6, 6)]:
        spec = F.interpolate(square, size=grid, mode="bilinear", align_corners=False, antialias=True)
        spec = spec.flatten(2)[0].T  # [rows * cols, C], row-major
        hf = ref.embeddings.resize_positional_embeddings(table.view(6, 6, -1), torch.tensor([grid]),
                                                         grid[0] * grid[1])[0]
        assert (ours.vision_model.embeddings.positions(grid) - spec).abs().max() < 1e-6
        assert (hf - spec).abs().max() < 1e-5


def test_siglip2_images_attend_within_themselves(reference_siglip2):
    """Two images of different sizes in one transformers batch (the smaller padded and masked) give
    what our tower gives for each image alone; in our own batches each image ignores the others."""
    ref, ours = tower_pair(reference_siglip2, VISION)
    g = torch.Generator().manual_seed(4)
    wide, square = torch.rand(3, 56, 84, generator=g) * 2 - 1, torch.rand(3, 56, 56, generator=g) * 2 - 1
    inputs = siglip2_inputs([wide, square], VISION.patch_size)
    assert inputs["pixel_attention_mask"].sum(1).tolist() == [24, 16]
    with torch.no_grad():
        expected = ref(**inputs).last_hidden_state  # [2, 24, C]
        alone = [ours(wide[None])[0], ours(square[None])[0]]
        pair = ours(torch.stack([square, torch.rand(3, 56, 56, generator=g) * 2 - 1]))
    assert (alone[0] - expected[0]).abs().max() < TOL
    assert (alone[1] - expected[1, :16]).abs().max() < TOL
    assert (pair[0] - alone[1]).abs().max() < 1e-6
    assert (pair[1] - alone[1]).abs().max() > 1e-2  # a different image: a different output


def spec_pixel_unshuffle(tokens: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """N1.6 spec 2.3 written out: patch token (r, c), channel ch -> token (r // 2, c // 2) of the
    row-major half-size grid, channel 4 * ch + 2 * (r % 2) + (c % 2). [N, rows*cols, C] -> [N, T, 4C]"""
    n, _, c = tokens.shape
    rows, cols = grid
    out = torch.zeros(n, rows * cols // 4, 4 * c)
    channels = torch.arange(c)
    for r in range(rows):
        for col in range(cols):
            out[:, (r // 2) * (cols // 2) + col // 2, 4 * channels + 2 * (r % 2) + col % 2] = \
                tokens[:, r * cols + col]
    return out


def test_pixel_unshuffle_follows_spec_formula():
    tokens = torch.randn(2, 4 * 6, 5, generator=torch.Generator().manual_seed(5))  # grid 4 x 6, C = 5
    got = pixel_unshuffle_tokens(tokens, (4, 6), 2)
    direct = F.pixel_unshuffle(tokens.transpose(1, 2).reshape(2, 5, 4, 6), 2).flatten(2).transpose(1, 2)
    assert got.shape == (2, 6, 20)
    assert torch.equal(got, spec_pixel_unshuffle(tokens, (4, 6)))
    assert torch.equal(got, direct)
    with pytest.raises(ValueError, match=r"patch grid \(4, 5\) is not divisible by 2"):
        pixel_unshuffle_tokens(tokens[:, :20], (4, 5), 2)


def spec_mlp1(x: torch.Tensor, state: dict[str, torch.Tensor]) -> torch.Tensor:
    """N1.6 spec 2.3: LayerNorm(eps 1e-5) -> Linear -> GELU (erf) -> Linear, checkpoint indices 0, 1, 3."""
    width = x.shape[-1]
    x = F.layer_norm(x, (width,), state["0.weight"], state["0.bias"], eps=1e-5)
    x = F.gelu(F.linear(x, state["1.weight"], state["1.bias"]), approximate="none")
    return F.linear(x, state["3.weight"], state["3.bias"])


def test_mlp1_is_layernorm_linear_gelu_linear(randomise):
    mlp1 = randomise(build_projector(N16_TINY), seed=6)
    state = mlp1.state_dict()
    width = 4 * N16_TINY.vision.hidden_size
    assert {k: tuple(v.shape) for k, v in state.items()} == {
        "0.weight": (width,), "0.bias": (width,), "1.weight": (64, width), "1.bias": (64,),
        "3.weight": (64, 64), "3.bias": (64,)}
    x = torch.randn(3, 6, width, generator=torch.Generator().manual_seed(7)) * 2 + 0.5
    with torch.no_grad():
        assert (mlp1(x) - spec_mlp1(x, state)).abs().max() < 1e-5


def test_block2a_backbone_matches_transformers_composition(randomise, reference_siglip2, reference_qwen3):
    """Whole EagleBlock2ABackbone (n1.6-tiny, non-square images, left padding, two images in one row)
    == transformers' Siglip2 tower -> spec unshuffle + mlp1 -> `<IMG_CONTEXT>` rows filled image by
    image, token by token -> transformers' Qwen3Model, all on our weights."""
    cfg = N16_TINY
    torch.manual_seed(0)
    ours = randomise(EagleBlock2ABackbone(cfg), seed=8).eval()
    tower = reference_siglip2(cfg.vision)
    tower.load_state_dict({k.removeprefix("vision_model."): v
                           for k, v in ours.model.vision_model.state_dict().items()}, strict=True)
    llm = reference_qwen3(cfg.llm, dropped_layers=0)
    llm.load_state_dict(ours.model.language_model.model.state_dict(), strict=True)

    img, pad, per_image = cfg.image_token_id, 0, 6  # 56 x 84 -> 4 x 6 patches -> 2 x 3 tokens
    ids = torch.tensor([[pad] * 8 + [72, 105] + [img] * per_image + [33, 10],
                        [72] + [img] * per_image + [105, 7] + [img] * per_image + [33, 10, 11]])
    mask = (torch.arange(ids.shape[1]) >= torch.tensor([[8], [0]])).long()
    pixels = torch.rand(3, 3, 56, 84, generator=torch.Generator().manual_seed(9)) * 2 - 1

    with torch.no_grad():
        got = ours(pixels, ids, mask)
        vision = tower(**siglip2_inputs(list(pixels), cfg.vision.patch_size)).last_hidden_state  # [3, 24, C]
        image_tokens = spec_mlp1(spec_pixel_unshuffle(vision, (4, 6)), ours.model.mlp1.state_dict())
        embeds = llm.embed_tokens(ids)
        for k, (row, pos) in enumerate((ids == img).nonzero().tolist()):  # row-major: k-th slot <- k-th token
            embeds[row, pos] = image_tokens[k // per_image, k % per_image]
        expected = llm(inputs_embeds=embeds, attention_mask=mask).last_hidden_state
    real = mask.bool()
    assert got.shape == (2, ids.shape[1], cfg.llm.hidden_size)
    assert (got[real] - expected[real]).abs().max() < TOL
