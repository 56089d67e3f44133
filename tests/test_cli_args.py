import argparse
from dataclasses import dataclass
from typing import Literal

import pytest

from groot.utils.cli_args import add_dataclass_arguments, arg, dataclass_from_args


@dataclass
class _Cfg:
    path: str = arg(help="where", positional=True)
    dataset_path: list[str] = arg(help="datasets")
    steps: int = arg(10, "how many")
    lr: float = arg(1e-4, "learning rate")
    tune_llm: bool = arg(False, "tune the LLM")
    mode: Literal["a", "b"] = arg("a", "mode")
    note: str | None = arg(None, "optional")
    tags: list[str] = arg(["x"], "tags")


def _parse(argv):
    p = argparse.ArgumentParser()
    add_dataclass_arguments(p, _Cfg)
    return dataclass_from_args(_Cfg, p.parse_args(argv))


def test_flags_map_to_fields():
    cfg = _parse(["here", "--dataset-path", "a", "b", "--steps", "3", "--tune-llm", "--mode", "b"])
    assert cfg == _Cfg(path="here", dataset_path=["a", "b"], steps=3, lr=1e-4, tune_llm=True,
                       mode="b", note=None, tags=["x"])
    assert _parse(["p", "--dataset-path", "a", "--no-tune-llm"]).tune_llm is False


def test_required_and_choices_are_enforced():
    with pytest.raises(SystemExit):
        _parse(["p"])  # --dataset-path missing
    with pytest.raises(SystemExit):
        _parse(["p", "--dataset-path", "a", "--mode", "c"])


def test_list_default_is_not_shared():
    a, b = _parse(["p", "--dataset-path", "a"]), _parse(["p", "--dataset-path", "a"])
    a.tags.append("y")
    assert b.tags == ["x"]
