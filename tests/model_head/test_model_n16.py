"""GR00T N1.6: key inventory vs the reference TSV, the N1.6 options of the shared blocks, tiny forward."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from groot.cli import main
from groot.errors import ConfigError
from groot.model.config import GR00TN16Config, preset_config
from groot.model.eagle import pixel_unshuffle_tokens
from groot.model.gr00t_n15 import GR00TN15
from groot.model.gr00t_n16 import GR00TN16
from groot.model.siglip import SiglipEmbeddings
from groot.model.synthetic_batch import synthetic_batch

TSV = Path(__file__).resolve().parents[1] / "fixtures" / "gr00t_n16_3b_state_dict.tsv"


def _reference_shapes() -> dict[str, str]:
    rows = {}
    for line in TSV.read_text().splitlines():
        if line.startswith("#") or line == "key\tshape" or not line:
            continue
        name, shape = line.split("\t")
        rows[name] = shape
    return rows


@pytest.fixture(scope="module")
def meta_3b() -> GR00TN16:
    with torch.device("meta"):
        return GR00TN16.from_preset("n1.6-3b")


def test_n16_3b_state_dict_matches_reference_inventory(meta_3b):
    mine = {name: str(tuple(t.shape)) for name, t in meta_3b.state_dict().items()}
    reference = _reference_shapes()
    assert len(reference) == 1106
    # the only key beyond the checkpoint: the state-dropout token the original also creates
    assert set(mine) - set(reference) == {"action_head.mask_token"}
    assert mine.pop("action_head.mask_token") == "(1, 1, 1536)"
    assert mine == reference
    total = sum(p.numel() for p in meta_3b.parameters())
    assert total - meta_3b.action_head.mask_token.numel() == 3_286_608_832
    # lm_head is its own tensor (stored untied in the checkpoint), the pooling head is built
    lm = meta_3b.backbone.vlm.language_model
    assert lm.lm_head.weight is not lm.model.embed_tokens.weight
    assert meta_3b.backbone.vlm.vision_model.vision_model.head is not None


def test_model_keys_cli_prints_the_n16_inventory(capsys, meta_3b):
    assert main(["model", "keys", "n1.6-3b"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "key\tshape"
    assert lines[1:] == [f"{k}\t{tuple(v.shape)}" for k, v in meta_3b.state_dict().items()]
    assert main(["model", "info", "n1.6-3b", "--format", "json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["total_parameters"] == sum(info["components"].values()) == 3_286_608_832 + 1536
    assert info["components"]["backbone.llm (Qwen3, truncated)"] == 1_426_659_328  # lm_head untied
    assert info["components"]["action_head.model (DiT)"] == 1_091_722_240


def test_presets_keep_n15_names_and_refuse_the_wrong_model_class():
    assert isinstance(preset_config("n1.6-tiny"), GR00TN16Config)
    assert not isinstance(preset_config("tiny"), GR00TN16Config)
    with pytest.raises(ConfigError, match="GR00TN16Config"):
        GR00TN15(preset_config("n1.6-tiny"))
    with pytest.raises(ConfigError, match="GR00TN15Config"):
        GR00TN16(preset_config("tiny"))


def test_n16_config_round_trips_through_its_dict():
    config = preset_config("n1.6-tiny")
    again = GR00TN16Config.from_dict(config.to_dict())
    assert again == config and config.to_dict()["model_type"] == "Gr00tN1d6"


def test_linear_patch_embedding_flattens_row_column_channel():
    cfg = dataclasses.replace(preset_config("n1.6-tiny").backbone_cfg.vision)
    emb = SiglipEmbeddings(cfg)
    pixels = torch.randn(1, 3, 28, 42)  # a 2 x 3 patch grid
    patches = emb.embed_patches(pixels)
    assert patches.shape == (1, 6, cfg.hidden_size)
    # patch (row 1, col 2): pixels [:, 14:28, 28:42] as a (row, col, channel) vector
    vector = pixels[0, :, 14:28, 28:42].permute(1, 2, 0).reshape(-1)
    torch.testing.assert_close(patches[0, 5], emb.patch_embedding(vector))


def test_positions_are_resized_to_the_native_grid():
    emb = SiglipEmbeddings(preset_config("n1.6-tiny").backbone_cfg.vision)  # 4 x 4 position table
    table = emb.position_embedding.weight
    assert emb.positions((4, 4)) is table
    wide = emb.positions((4, 6))
    assert wide.shape == (24, table.shape[1])
    expected = F.interpolate(table.T.reshape(1, -1, 4, 4), size=(4, 6), mode="bilinear",
                             align_corners=False, antialias=True).flatten(2)[0].T
    torch.testing.assert_close(wide, expected)


def test_pixel_unshuffle_channel_order_is_4c_plus_2dy_plus_dx():
    tokens = torch.arange(2 * 4 * 6 * 3, dtype=torch.float32).view(2, 24, 3)  # grid 4 x 6, C = 3
    merged = pixel_unshuffle_tokens(tokens, (4, 6), 2)
    assert merged.shape == (2, 6, 12)
    # merged token (block row 1, block col 2) = 5, channel c, offset (dy, dx) <- patch (2 + dy, 4 + dx)
    for c in range(3):
        for dy in range(2):
            for dx in range(2):
                assert merged[1, 5, 4 * c + 2 * dy + dx] == tokens[1, (2 + dy) * 6 + 4 + dx, c]


def test_backbone_encodes_a_non_square_image_into_hw_over_784_tokens():
    torch.manual_seed(0)
    model = GR00TN16.from_preset("n1.6-tiny")
    image_tokens = model.backbone.encode_images(torch.rand(3, 3, 56, 84) * 2 - 1)
    assert image_tokens.shape == (3, 56 * 84 // 784, 64) and torch.isfinite(image_tokens).all()


def test_alternate_dit_masks_text_and_image_blocks():
    model = GR00TN16.from_preset("n1.6-tiny")
    dit = model.action_head.model
    assert dit.cross_block_ids == [0, 2]
    batch = synthetic_batch(model.config, batch=2)
    text, image = model.vl_masks(batch)
    assert not (text & image).any() and (text | image).all()
    assert int(image[0].sum()) == model.config.backbone_cfg.num_image_tokens
    masks = dit.cross_masks(text, image)
    assert torch.equal(masks[0][:, 0, 0], text) and torch.equal(masks[1][:, 0, 0], image)


def test_small_preset_has_the_checkpoint_envelope():
    with torch.device("meta"):
        model = GR00TN16.from_preset("n1.6-small")
    head = model.action_head
    assert head.state_encoder.layer1.W.shape[1] == head.action_decoder.layer2.W.shape[2] == 128
    assert model.config.action_head_cfg.action_horizon == 50 and len(head.model.cross_block_ids) == 4


def test_tiny_loss_and_sampling_are_finite_and_ignore_padding_features():
    torch.manual_seed(0)
    model = GR00TN16.from_preset("n1.6-tiny").train()
    batch = synthetic_batch(model.config, batch=2)
    loss = model(batch)["loss"]
    assert loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    assert model.action_head.mask_token.grad is not None
    assert torch.isfinite(model.action_head.model.proj_out_2.weight.grad).all()

    model.eval()
    head = model.action_head.cfg
    noise = torch.randn(2, head.action_horizon, head.action_dim)
    actions = model.get_action(batch, noise=noise)["action_pred"]
    assert actions.shape == (2, 16, 32) and torch.isfinite(actions).all()
    # left-pad sample 0: the padded positions reach neither the text nor the image blocks
    pad = 3
    padded = dataclasses.replace(
        batch,
        input_ids=torch.cat([torch.full((2, pad), 7), batch.input_ids], dim=1),
        attention_mask=torch.cat([torch.tensor([[0] * pad, [1] * pad]), batch.attention_mask], dim=1))
    features = model.backbone_features(padded)
    altered = features.clone()
    altered[0, :pad] = 10 * torch.randn(pad, features.shape[-1])
    masks = model.vl_masks(padded)
    sample = model.action_head.sample
    state, ids = padded.state, padded.embodiment_id
    torch.testing.assert_close(sample(features, state, ids, noise=noise, vl_masks=masks),
                               sample(altered, state, ids, noise=noise, vl_masks=masks))
    unmasked = sample(altered, state, ids, noise=noise, vl_masks=None)
    assert not torch.allclose(unmasked, sample(features, state, ids, noise=noise, vl_masks=None))


def test_n16_time_sampling_and_state_dropout():
    head = GR00TN16.from_preset("n1.6-tiny").action_head
    torch.manual_seed(0)
    t = head.sample_time(4000, torch.device("cpu"))
    assert float(t.min()) >= 0 and float(t.max()) <= 0.999
    assert float(t.mean()) < 0.5  # (1 - u) * s with u ~ Beta(1.5, 1) piles up near t = 0
    tokens = torch.randn(1000, 1, 64)
    dropped = head.drop_state(tokens)
    is_mask = (dropped == head.mask_token).all(-1)[:, 0]
    assert 0.7 < float(is_mask.float().mean()) < 0.9  # state_dropout_prob 0.8
    torch.testing.assert_close(dropped[~is_mask], tokens[~is_mask])


def test_n16_tiny_saves_and_loads_back_into_gr00tn16(tmp_path):
    torch.manual_seed(0)
    model = GR00TN16.from_preset("n1.6-tiny")
    out = model.save_pretrained(tmp_path / "ckpt")
    loaded = GR00TN15.from_pretrained(out)
    assert type(loaded) is GR00TN16 and loaded.config == model.config
    for name, tensor in model.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[name], tensor)


def test_loading_without_mask_token_draws_it(tmp_path):
    from safetensors.torch import load_file, save_file

    out = GR00TN16.from_preset("n1.6-tiny").save_pretrained(tmp_path / "ckpt")
    weights = load_file(str(out / "model.safetensors"))
    del weights["action_head.mask_token"]
    save_file(weights, str(out / "model.safetensors"), metadata={"format": "pt"})
    loaded = GR00TN15.from_pretrained(out)
    token = loaded.action_head.mask_token
    assert token.shape == (1, 1, 64) and not token.is_meta and 0 < float(token.detach().std()) < 0.1
    assert main(["model", "keys", str(out)]) == 0


OFFICIAL_CONFIG = Path(__file__).resolve().parents[1] / "fixtures" / "gr00t_n16_official_config.json"


def _read_config_json(tmp_path, values: dict):
    from groot.model.checkpoint import read_config

    (tmp_path / "config.json").write_text(json.dumps(values))
    return read_config(tmp_path)


def test_official_flat_config_builds_the_3b_structure(tmp_path):
    config = _read_config_json(tmp_path, json.loads(OFFICIAL_CONFIG.read_text()))
    expected = preset_config("n1.6-3b")
    expected.backbone_cfg.tune_top_llm_layers = 4  # the release's pretraining setting, read from the file
    assert isinstance(config, GR00TN16Config) and config == expected
    with torch.device("meta"):
        model = GR00TN16(config)
    mine = {name: str(tuple(t.shape)) for name, t in model.state_dict().items()}
    assert mine.pop("action_head.mask_token") == "(1, 1, 1536)"
    assert mine == _reference_shapes()


def test_official_flat_config_values_reach_the_model_config(tmp_path):
    values = json.loads(OFFICIAL_CONFIG.read_text())
    values.update(select_layer=12, action_horizon=16, max_action_dim=32, backbone_embedding_dim=1024,
                  use_alternate_vl_dit=False, formalize_language=False, noise_s=1, tune_llm=True,
                  some_future_key={"ignored": True})
    values["diffusion_model_cfg"]["num_layers"] = 8
    config = _read_config_json(tmp_path, values)
    bb, head = config.backbone_cfg, config.action_head_cfg
    assert bb.select_layer == bb.llm.num_layers == 12 and bb.tune_llm
    assert head.action_horizon == 16 and head.action_dim == head.max_action_dim == 32
    assert head.backbone_embedding_dim == head.diffusion_model_cfg.cross_attention_dim == 1024
    dit = head.diffusion_model_cfg
    assert dit.num_layers == 8 and dit.attend_text_every_n_blocks is None
    assert head.noise_s == 1.0 and isinstance(head.noise_s, float) and not config.formalize_language
    assert bb.vision == preset_config("n1.6-3b").backbone_cfg.vision  # not in the official file


@pytest.mark.parametrize(("key", "value", "expected"), [
    ("action_horizon", "50", "an integer"), ("action_horizon", True, "an integer"),
    ("state_dropout_prob", float("nan"), "a finite number"), ("formalize_language", 1, "true or false"),
    ("diffusion_model_cfg", [], "a JSON object")])
def test_official_flat_config_refuses_wrong_types(tmp_path, key, value, expected):
    from groot.errors import CheckpointError

    values = json.loads(OFFICIAL_CONFIG.read_text())
    values[key] = value
    with pytest.raises(CheckpointError, match=rf"config.json: key '{key}': expected {expected}, found"):
        _read_config_json(tmp_path, values)


def test_official_flat_config_refuses_a_wrong_dit_value(tmp_path):
    from groot.errors import CheckpointError

    values = json.loads(OFFICIAL_CONFIG.read_text())
    values["diffusion_model_cfg"]["num_layers"] = 3.5
    with pytest.raises(CheckpointError, match="key 'diffusion_model_cfg.num_layers': expected an integer"):
        _read_config_json(tmp_path, values)


def test_groot_layout_keeps_the_processing_flags():
    config = preset_config("n1.6-tiny")
    config.formalize_language, config.use_relative_action = False, False
    d = config.to_dict()
    assert d["formalize_language"] is False and d["apply_sincos_state_encoding"] is True
    assert GR00TN16Config.from_dict(d) == config
