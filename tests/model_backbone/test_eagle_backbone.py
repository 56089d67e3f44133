"""EagleBackbone: checkpoint key inventory, image-token scatter, forward shapes and errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from groot.errors import ObservationError
from groot.model.config import preset_config
from groot.model.eagle import EagleBackbone

TSV = Path(__file__).resolve().parents[1] / "fixtures" / "gr00t_n15_3b_state_dict.tsv"
IMG = 261  # tiny preset's <IMG_CONTEXT>


def _reference_backbone_keys() -> dict[str, tuple[int, ...]]:
    rows = {}
    for line in TSV.read_text().splitlines():
        if not line.startswith("backbone."):
            continue
        key, shape = line.split("\t")
        rows[key] = tuple(int(d) for d in shape.strip("()").split(",") if d.strip())
    return rows


def test_n15_3b_key_inventory_matches_checkpoint():
    with torch.device("meta"):
        backbone = EagleBackbone(preset_config("n1.5-3b").backbone_cfg)
    ours = {f"backbone.{k}": tuple(v.shape) for k, v in backbone.state_dict(keep_vars=True).items()}
    assert ours == _reference_backbone_keys()
    names = dict(backbone.named_parameters(remove_duplicate=False))
    lm_head = names["eagle_model.language_model.lm_head.weight"]
    assert lm_head is names["eagle_model.language_model.model.embed_tokens.weight"]


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return EagleBackbone(preset_config("tiny").backbone_cfg).eval()


def test_image_tokens_scattered_in_row_major_order(tiny):
    n_tok, dim = tiny.cfg.num_image_tokens, tiny.cfg.llm.hidden_size
    ids = torch.tensor([[256, 72] + [IMG] * n_tok + [105] + [IMG] * n_tok + [33],  # two images per row
                        [72, 105, 1] + [IMG] * n_tok + [IMG] * n_tok + [33]])
    image_embeds = torch.randn(4, n_tok, dim)
    embeds = tiny.embed(ids, image_embeds)
    table = tiny.eagle_model.language_model.model.embed_tokens.weight
    for row in range(2):
        slots = (ids[row] == IMG).nonzero().flatten()
        assert torch.equal(embeds[row, slots[:n_tok]], image_embeds[2 * row])
        assert torch.equal(embeds[row, slots[n_tok:]], image_embeds[2 * row + 1])
        text = (ids[row] != IMG).nonzero().flatten()
        assert torch.equal(embeds[row, text], table[ids[row, text]])


def test_forward_equals_pieces_and_checks_image_count(tiny):
    n_tok = tiny.cfg.num_image_tokens
    size = tiny.cfg.vision.image_size
    ids = torch.tensor([[256, 256, 72] + [IMG] * n_tok + [105], [72, 105, 1] + [IMG] * n_tok + [33]])
    mask = (ids != 256).long()
    pixels = torch.rand(2, 3, size, size) * 2 - 1
    with torch.no_grad():
        features = tiny(pixels, ids, mask)
        by_pieces = tiny.language_model(tiny.embed(ids, tiny.encode_images(pixels)), mask)
        other_pixels = tiny(torch.rand(2, 3, size, size) * 2 - 1, ids, mask)
    assert features.shape == (2, ids.shape[1], tiny.cfg.llm.hidden_size)
    assert torch.equal(features, by_pieces)
    assert not torch.allclose(features[1, -1], other_pixels[1, -1])  # text after the image sees it
    with pytest.raises(ObservationError, match="image-token positions"):
        tiny(pixels[:1], ids, mask)
    with pytest.raises(ObservationError, match="3 images x 16"):
        tiny.check_image_tokens(ids, 3)  # the host-side check callers with device ids run first


def test_image_embeddings_receive_gradients_through_the_scatter(tiny):
    n_tok, dim = tiny.cfg.num_image_tokens, tiny.cfg.llm.hidden_size
    ids = torch.tensor([[72] + [IMG] * n_tok + [33], [IMG] * n_tok + [105, 1]])
    image_embeds = torch.randn(2, n_tok, dim, requires_grad=True)
    weights = torch.randn(2, ids.shape[1], dim)
    (tiny.embed(ids, image_embeds) * weights).sum().backward()
    assert torch.equal(image_embeds.grad[0], weights[0, 1:1 + n_tok])
    assert torch.equal(image_embeds.grad[1], weights[1, :n_tok])


def test_trainable_flags_freeze_parts():
    cfg = preset_config("tiny").backbone_cfg
    cfg.tune_llm, cfg.tune_visual = False, True
    backbone = EagleBackbone(cfg)
    assert not any(p.requires_grad for p in backbone.language_model.parameters())
    assert all(p.requires_grad for p in backbone.eagle_model.mlp1.parameters())
    assert all(p.requires_grad for p in backbone.eagle_model.vision_model.parameters())
