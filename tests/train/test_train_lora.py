import numpy as np
import torch

from groot.model.checkpoint import save_state_dict
from groot.model.gr00t_n15 import GR00TN15
from groot.model.processor import GrootProcessor
from groot.train.lora import (
    apply_lora,
    load_adapters,
    lora_scalings,
    lora_target_names,
    merged_state_dict,
    save_adapters,
)


def _batch(config):
    rng = np.random.default_rng(0)
    samples = [{"images": rng.integers(0, 255, (1, 32, 32, 3), dtype=np.uint8), "language": text,
                "state": rng.standard_normal((1, 64)).astype(np.float32),
                "state_mask": np.ones((1, 64), dtype=bool), "embodiment_id": 31}
               for text in ("pick the cube", "open")]
    return GrootProcessor.for_config(config)(samples)


def _tiny(seed=0):
    torch.manual_seed(seed)
    return GR00TN15.from_preset("tiny")


def test_targets_only_attention_projections_under_action_head():
    model = _tiny()
    head_only = lora_target_names(model, full_model=False)
    everywhere = lora_target_names(model, full_model=True)
    assert head_only and all(n.startswith("action_head.") for n in head_only)
    assert all(n.rsplit(".", 1)[-1] in ("to_q", "to_k", "to_v") for n in head_only)
    assert set(head_only) < set(everywhere)
    assert any(n.startswith("backbone.") and n.endswith(("q_proj", "k_proj", "v_proj")) for n in everywhere)


def test_adapters_and_merged_export_give_the_adapter_model_output(tmp_path):
    model = _tiny()
    apply_lora(model, rank=4, alpha=8, dropout=0.1, full_model=False)
    assert all("lora_" in n for n, p in model.named_parameters() if p.requires_grad)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.5)  # a trained-looking adapter
    model.eval()
    batch = _batch(model.config)
    noise = torch.randn(2, 16, 32, generator=torch.Generator().manual_seed(1))
    expected = model.get_action(batch, noise=noise)["action_pred"]
    plain = _tiny().get_action(batch, noise=noise)["action_pred"]
    assert not torch.allclose(expected, plain, atol=1e-4)  # the adapters matter

    save_adapters(model, tmp_path / "adapter", base_model="tiny")
    scalings = lora_scalings(model)
    assert set(scalings) == set(lora_target_names(_tiny(), full_model=False))
    assert set(scalings.values()) == {8 / 4}  # alpha / rank
    save_state_dict(model.config, merged_state_dict(model.state_dict(), scalings), tmp_path / "merged")
    assert any("lora_" in n for n in model.state_dict())  # the model keeps its adapters

    merged = GR00TN15.from_pretrained(tmp_path / "merged")
    assert set(merged.state_dict()) == set(_tiny().state_dict())
    torch.testing.assert_close(merged.get_action(batch, noise=noise)["action_pred"], expected,
                               atol=1e-5, rtol=1e-4)
    reloaded = _tiny()
    load_adapters(reloaded, tmp_path / "adapter")
    torch.testing.assert_close(reloaded.eval().get_action(batch, noise=noise)["action_pred"], expected)
