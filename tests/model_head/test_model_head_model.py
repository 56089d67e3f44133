"""GR00TN15 as a whole: key inventory vs the reference TSV, trainable flags, overfitting, sampling."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from groot.model.checkpoint import read_config
from groot.model.config import preset_config
from groot.model.gr00t_n15 import GR00TN15

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
TSV = FIXTURES / "gr00t_n15_3b_state_dict.tsv"
OFFICIAL_CONFIG = FIXTURES / "gr00t_n15_3b_config.json"


def _reference_rows() -> list[tuple[str, str]]:
    rows = []
    for line in TSV.read_text().splitlines():
        if line.startswith("#") or line == "key\tshape" or not line:
            continue
        name, shape = line.split("\t")
        rows.append((name, shape))
    return rows


def test_n15_3b_state_dict_matches_reference_inventory():
    with torch.device("meta"):
        model = GR00TN15.from_preset("n1.5-3b")
    mine = [(name, str(tuple(t.shape))) for name, t in model.state_dict().items()]
    reference = _reference_rows()
    assert len(reference) == 899
    assert dict(mine) == dict(reference)
    assert len(mine) == len(reference)
    # the action head registers its modules in the checkpoint's order
    assert [r for r in mine if r[0].startswith("action_head.")] == \
        [r for r in reference if r[0].startswith("action_head.")]
    unique = sum(p.numel() for p in model.parameters())
    assert unique == 2_413_522_880  # spec 4: ~2,413.5 M unique parameters
    assert sum(p.numel() for p in model.action_head.parameters()) == 1_068_806_144


def test_official_config_json_without_groot_block_builds_the_3b_model(tmp_path):
    official = json.loads(OFFICIAL_CONFIG.read_text())
    assert "groot" not in official
    shutil.copy(OFFICIAL_CONFIG, tmp_path / "config.json")
    config = read_config(tmp_path)
    expected = preset_config("n1.5-3b")
    expected.backbone_cfg.tune_visual = True  # the released config trains the vision tower
    assert config == expected
    with torch.device("meta"):
        model = GR00TN15(config)
    assert {name: str(tuple(t.shape)) for name, t in model.state_dict().items()} == dict(_reference_rows())
    trainable = model.trainable_parameter_names()
    assert any(name.startswith("backbone.eagle_model.vision_model.") for name in trainable)
    # every official field groot models is written back with its value
    written = config.to_dict()
    for section in ("backbone_cfg", "action_head_cfg"):
        for key, value in official[section].items():
            if isinstance(value, dict):
                for sub_key, sub_value in value.items():
                    if sub_key in written[section][key]:
                        assert written[section][key][sub_key] == sub_value, (section, key, sub_key)
            elif key in written[section] and key != "use_flash_attention":
                assert written[section][key] == value, (section, key)
    for key in ("model_type", "architectures", "action_dim", "action_horizon", "hidden_size"):
        assert written[key] == official[key], key


@pytest.fixture
def tiny() -> GR00TN15:
    torch.manual_seed(0)
    return GR00TN15.from_preset("tiny")


def test_default_flags_train_only_the_action_head(tiny):
    names = tiny.trainable_parameter_names()
    assert names and all(n.startswith("action_head.") for n in names)
    assert any(n.startswith("action_head.model.") for n in names)
    assert any(n.startswith("action_head.state_encoder.") for n in names)


def test_projector_and_diffusion_flags(tiny):
    tiny.set_trainable(tune_llm=True, tune_visual=False, tune_projector=False, tune_diffusion_model=False)
    names = set(tiny.trainable_parameter_names())
    prefixes = {n.split(".")[1] if n.startswith("action_head.") else ".".join(n.split(".")[:3])
                for n in names}
    assert prefixes == {"backbone.eagle_model.language_model", "vlln", "vl_self_attention", "future_tokens"}
    assert tiny.config.action_head_cfg.tune_projector is False  # recorded for save_pretrained
    tiny.train()
    assert tiny.training and tiny.action_head.vl_self_attention.training
    assert tiny.backbone.eagle_model.language_model.training  # tuned -> train mode
    for frozen in (tiny.action_head.model, tiny.action_head.state_encoder, tiny.action_head.action_decoder,
                   tiny.backbone.eagle_model.vision_model, tiny.backbone.eagle_model.mlp1):
        assert not frozen.training
    tiny.set_trainable(tune_llm=False, tune_visual=True, tune_projector=True, tune_diffusion_model=True)
    assert tiny.action_head.model.training and tiny.backbone.eagle_model.vision_model.training
    assert not tiny.backbone.eagle_model.language_model.training
    assert any(n.startswith("backbone.eagle_model.mlp1.") for n in tiny.trainable_parameter_names())


def test_frozen_dit_gets_no_gradient(tiny, batch_factory):
    tiny.set_trainable(tune_llm=False, tune_visual=False, tune_projector=True, tune_diffusion_model=False)
    tiny.train()
    tiny(batch_factory(tiny.config))["loss"].backward()
    assert all(p.grad is None for p in tiny.action_head.model.parameters())
    assert tiny.action_head.state_encoder.layer1.W.grad is not None
    assert all(p.grad is None for p in tiny.backbone.parameters())


@pytest.mark.slow  # over 30 s on a 2-core CPU
def test_tiny_overfits_one_batch(tiny, batch_factory):
    """One batch with fixed flow noise and times (re-seeded every step): the whole path from pixels
    and token ids to the velocity loss must be able to memorise it."""
    batch = batch_factory(tiny.config, batch=2)

    def fixed_noise_loss() -> torch.Tensor:
        torch.manual_seed(1234)
        return tiny(batch)["loss"]

    optimizer = torch.optim.AdamW([p for p in tiny.parameters() if p.requires_grad], lr=1e-3)
    tiny.train()
    with torch.no_grad():
        before = fixed_noise_loss().item()
    for _ in range(120):
        loss = fixed_noise_loss()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        after = fixed_noise_loss().item()
    assert after < before / 10, (before, after)


def test_get_action_shape_and_determinism(tiny, batch_factory):
    batch = batch_factory(tiny.config, batch=3)
    tiny.eval()
    noise = torch.randn(3, 16, 32)
    a = tiny.get_action(batch, noise=noise)["action_pred"]
    b = tiny.get_action(batch, noise=noise)["action_pred"]
    c = tiny.get_action(batch, num_steps=8, generator=torch.Generator().manual_seed(0))["action_pred"]
    d = tiny.get_action(batch, num_steps=8, generator=torch.Generator().manual_seed(0))["action_pred"]
    assert a.shape == (3, 16, 32) and torch.isfinite(a).all()
    assert torch.equal(a, b) and torch.equal(c, d)
    assert not a.requires_grad


def test_bf16_model_accepts_fp32_batch(tiny, batch_factory):
    model = tiny.to(torch.bfloat16).eval()
    out = model.get_action(batch_factory(model.config), generator=torch.Generator().manual_seed(0))
    assert out["action_pred"].dtype == torch.bfloat16 and torch.isfinite(out["action_pred"]).all()
    assert torch.isfinite(model(batch_factory(model.config))["loss"])
