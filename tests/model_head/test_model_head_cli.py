"""`groot model keys|info` on presets and checkpoint directories."""

from __future__ import annotations

import json

import pytest
import torch

from groot.cli import main
from groot.model.gr00t_n15 import GR00TN15


def test_keys_prints_tsv_rows_for_a_preset(capsys):
    assert main(["model", "keys", "tiny"]) == 0
    lines = capsys.readouterr().out.splitlines()
    with torch.device("meta"):
        expected = GR00TN15.from_preset("tiny").state_dict()
    assert lines[0] == "key\tshape"
    assert lines[1:] == [f"{k}\t{tuple(v.shape)}" for k, v in expected.items()]
    assert "action_head.vlln.weight\t(64,)" in lines


def test_keys_and_info_read_a_checkpoint_directory(tmp_path, capsys):
    out = GR00TN15.from_preset("tiny").save_pretrained(tmp_path / "ckpt")
    assert main(["model", "keys", str(out)]) == 0
    assert capsys.readouterr().out.count("\n") == 1 + len(GR00TN15.from_preset("tiny").state_dict())
    assert main(["model", "info", str(out), "--format", "json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["preset"] == "tiny" and info["safetensors_bytes_on_disk"] > 4 * info["total_parameters"]


def test_info_counts_and_default_trainable_for_the_3b_preset(capsys):
    assert main(["model", "info", "n1.5-3b", "--format", "json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["total_parameters"] == sum(info["components"].values()) == 2_413_522_880
    assert info["trainable_default_finetune"] == 1_068_806_144  # the whole action head
    assert info["bf16_bytes"] == 2 * info["total_parameters"]
    assert main(["model", "info", "small"]) == 0
    table = capsys.readouterr().out
    assert "action_head.model (DiT)" in table and "bf16 size on disk" in table


def test_unknown_source_is_one_error_line_with_exit_2(capsys):
    assert main(["model", "info", "nope"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: unknown model preset 'nope'") and len(err.strip().splitlines()) == 1


def test_help_explains_every_flag(capsys):
    with pytest.raises(SystemExit):
        main(["model", "info", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "SOURCE" in text and "checkpoint directory" in text and "--format" in text
