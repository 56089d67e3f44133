"""`groot rl --help` documents every flag; settings errors name the flag."""

from __future__ import annotations

import dataclasses

import pytest

from groot.cli import build_parser
from groot.rl.commands import RLConfig


def test_help_documents_every_flag(capsys):
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(["rl", "--help"])
    assert exit_info.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    for field in dataclasses.fields(RLConfig):
        flag = f"--{field.name.replace('_', '-')}"
        assert flag in text, flag
        assert field.metadata["help"], field.name
    assert "from --recipe" in text and "n1.5-3b" in text


def test_flags_parse_into_the_config():
    args = build_parser().parse_args(
        [
            "rl",
            "--model-path",
            "ckpt",
            "--tasks",
            "0",
            "3",
            "--noise-level",
            "0.3",
            "--joint-log-prob",
            "--recipe",
            "small",
            "--no-tune-diffusion-model",
        ]
    )
    cfg = RLConfig(**{f.name: getattr(args, f.name) for f in dataclasses.fields(RLConfig)})
    assert cfg.tasks == [0, 3] and cfg.noise_level == 0.3 and cfg.joint_log_prob and cfg.recipe == "small"
    assert not cfg.tune_diffusion_model and cfg.num_envs is None
