"""save_pretrained / load_pretrained: bit-exact round trips, shards, tied lm_head, key reports."""

from __future__ import annotations

import json
import logging

import pytest
import torch
from safetensors.torch import load_file, save_file

from groot.errors import CheckpointError
from groot.model import checkpoint
from groot.model.config import preset_config
from groot.model.gr00t_n15 import GR00TN15

LM_HEAD = "backbone.eagle_model.language_model.lm_head.weight"
EMBED = "backbone.eagle_model.language_model.model.embed_tokens.weight"


@pytest.fixture(scope="module")
def tiny() -> GR00TN15:
    torch.manual_seed(0)
    return GR00TN15.from_preset("tiny").eval()


def _assert_same_weights(a: GR00TN15, b: GR00TN15) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    for key in sa:
        assert sa[key].dtype == sb[key].dtype, key
        assert torch.equal(sa[key], sb[key]), key


def test_fp32_round_trip_is_bit_exact_single_file(tiny, tmp_path):
    out = tiny.save_pretrained(tmp_path / "ckpt", metadata={"new_embodiment": {"statistics": {}}},
                               data_config={"video_keys": ["video.ego_view"]})
    files = sorted(p.name for p in out.iterdir())
    assert files == ["config.json", "experiment_cfg", "model.safetensors"]
    experiment = out / "experiment_cfg"
    assert json.loads((experiment / "metadata.json").read_text()) == {"new_embodiment": {"statistics": {}}}
    assert json.loads((experiment / "data_config.json").read_text())["video_keys"] == ["video.ego_view"]
    config = json.loads((out / "config.json").read_text())
    assert config["groot"]["preset"] == "tiny" and config["torch_dtype"] == "float32"
    assert LM_HEAD not in load_file(out / "model.safetensors")  # tied: stored once
    loaded = GR00TN15.from_pretrained(out)
    _assert_same_weights(tiny, loaded)
    lm = loaded.backbone.eagle_model.language_model
    assert lm.lm_head.weight is lm.model.embed_tokens.weight
    assert not loaded.training
    assert loaded.trainable_parameter_names() == tiny.trainable_parameter_names()


def test_bf16_sharded_round_trip_is_bit_exact(tiny, tmp_path, batch_factory):
    model = GR00TN15(tiny.config.copy())
    model.load_state_dict(tiny.state_dict())
    model = model.to(torch.bfloat16)
    out = checkpoint.save_pretrained(model, tmp_path / "ckpt", max_shard_size="300KB")
    index = json.loads((out / checkpoint.INDEX_FILE).read_text())
    shards = sorted(set(index["weight_map"].values()))
    assert len(shards) > 2 and shards[0] == f"model-00001-of-{len(shards):05d}.safetensors"
    state = model.state_dict()
    for name in shards:  # within the limit, or one tensor that alone exceeds it
        keys = [k for k, shard in index["weight_map"].items() if shard == name]
        assert len(keys) == 1 or sum(state[k].numel() * 2 for k in keys) <= 300_000
    assert index["metadata"]["total_size"] == sum(
        t.numel() * 2 for k, t in model.state_dict().items() if k != LM_HEAD)
    loaded = checkpoint.load_pretrained(out)
    _assert_same_weights(model, loaded)
    noise = torch.randn(1, 16, 32)
    batch = batch_factory(model.config, batch=1)
    assert torch.equal(model.get_action(batch, noise=noise)["action_pred"],
                       loaded.get_action(batch, noise=noise)["action_pred"])


def test_load_casts_dtype_on_request(tiny, tmp_path):
    out = tiny.save_pretrained(tmp_path / "ckpt")
    loaded = GR00TN15.from_pretrained(out, dtype=torch.bfloat16)
    assert {p.dtype for p in loaded.parameters()} == {torch.bfloat16}
    assert torch.equal(loaded.action_head.future_tokens.weight,
                       tiny.action_head.future_tokens.weight.to(torch.bfloat16))


def test_saving_again_replaces_the_directory_atomically(tiny, tmp_path):
    target = tmp_path / "ckpt"
    tiny.save_pretrained(target, max_shard_size="300KB")
    tiny.save_pretrained(target)
    assert sorted(p.name for p in target.iterdir()) == ["config.json", "model.safetensors"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]  # no temp / old dirs left


def _rewrite_weights(directory, edit) -> None:
    path = directory / "model.safetensors"
    state = load_file(path)
    edit(state)
    save_file(state, path)


def test_missing_keys_raise_a_grouped_report(tiny, tmp_path):
    out = tiny.save_pretrained(tmp_path / "ckpt")
    _rewrite_weights(out, lambda s: [s.pop(k) for k in list(s) if ".attn1.to_k." in k])
    with pytest.raises(CheckpointError) as err:
        checkpoint.load_pretrained(out)
    message = str(err.value)
    assert str(out) in message and "missing" in message
    assert "action_head.model.transformer_blocks.*.attn1.to_k.weight (x4)" in message


def test_shape_mismatch_names_key_expected_and_found(tiny, tmp_path):
    out = tiny.save_pretrained(tmp_path / "ckpt")
    _rewrite_weights(out, lambda s: s.update({"action_head.vlln.weight": torch.ones(3)}))
    with pytest.raises(CheckpointError, match=r"action_head.vlln.weight: expected \(64,\), found \(3,\)"):
        checkpoint.load_pretrained(out)


def test_unexpected_keys_are_reported_and_ignored(tiny, tmp_path, caplog):
    out = tiny.save_pretrained(tmp_path / "ckpt")
    _rewrite_weights(out, lambda s: s.update({"action_head.extra.weight": torch.ones(2)}))
    with caplog.at_level(logging.WARNING, logger="groot.model.checkpoint"):
        loaded = checkpoint.load_pretrained(out)
    assert "action_head.extra.weight" in caplog.text
    _assert_same_weights(tiny, loaded)


def test_stored_lm_head_is_accepted_and_tied(tiny, tmp_path):
    out = tiny.save_pretrained(tmp_path / "ckpt")
    _rewrite_weights(out, lambda s: s.update({LM_HEAD: s[EMBED].clone()}))
    lm = checkpoint.load_pretrained(out).backbone.eagle_model.language_model
    assert lm.lm_head.weight is lm.model.embed_tokens.weight


def test_pooling_head_is_kept_when_stored_and_dropped_when_absent(tmp_path):
    config = preset_config("tiny")
    config.backbone_cfg.vision.with_pooling_head = True
    model = GR00TN15(config)
    out = model.save_pretrained(tmp_path / "ckpt")
    _assert_same_weights(model, checkpoint.load_pretrained(out))
    prefix = checkpoint.POOLING_HEAD_PREFIX
    _rewrite_weights(out, lambda s: [s.pop(k) for k in list(s) if k.startswith(prefix)])
    loaded = checkpoint.load_pretrained(out)
    assert loaded.backbone.eagle_model.vision_model.vision_model.head is None
    assert not any(k.startswith(checkpoint.POOLING_HEAD_PREFIX) for k in loaded.state_dict())


def test_missing_files_are_reported(tmp_path):
    with pytest.raises(CheckpointError, match="config.json"):
        checkpoint.read_config(tmp_path)
    with pytest.raises(CheckpointError, match="model.safetensors"):
        checkpoint.weight_files(tmp_path)
    with pytest.raises(CheckpointError, match="expected a checkpoint directory"):
        checkpoint.resolve_checkpoint_dir(tmp_path / "nope")


def test_hub_ids_download_only_json_and_safetensors(monkeypatch, tmp_path):
    calls = {}

    def fake_snapshot_download(repo_id, allow_patterns=None, **options):
        calls.update(repo_id=repo_id, allow_patterns=allow_patterns)
        return str(tmp_path)

    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot_download)
    assert checkpoint.resolve_checkpoint_dir("nvidia/GR00T-N1.5-3B") == tmp_path
    assert calls["repo_id"] == "nvidia/GR00T-N1.5-3B"
    assert "*.json" in calls["allow_patterns"] and "*.safetensors" in calls["allow_patterns"]


def test_parse_size_and_describe_keys():
    assert checkpoint.parse_size("2GB") == 2 * 10**9
    assert checkpoint.parse_size("500MiB") == 500 * 2**20
    assert checkpoint.parse_size(123) == 123
    with pytest.raises(ValueError, match="max_shard_size"):
        checkpoint.parse_size("lots")
    report = checkpoint.describe_keys(["a.0.w", "a.1.w", "b.w"])
    assert report == "3 key(s): a.*.w (x2), b.w"


def test_failed_hub_download_is_a_checkpoint_error(monkeypatch):
    def offline(repo_id, **options):
        raise OSError("no network")

    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "snapshot_download", offline)
    with pytest.raises(CheckpointError, match="nvidia/GR00T-N1.5-3B: not a local directory.*no network"):
        checkpoint.resolve_checkpoint_dir("nvidia/GR00T-N1.5-3B")
    with pytest.raises(CheckpointError, match="expected a checkpoint directory"):
        checkpoint.resolve_checkpoint_dir("runs/exp1/checkpoint-100")  # not owner/name: never downloaded
