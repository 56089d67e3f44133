"""Every command answers a user's mistake with one `error:` line and exit status 2, never a traceback."""

from __future__ import annotations

import pytest

from groot.cli import main

MISSING = "/nonexistent/groot-test"


def dataset_and_checkpoint_free_mistakes(tmp_path) -> dict[str, tuple[list[str], str]]:
    (tmp_path / "old_demo" / "dataset").mkdir(parents=True)
    return {
        "data info": (["data", "info", MISSING], "meta/info.json"),
        "data validate": (["data", "validate", MISSING], "meta/info.json"),
        "data stats": (["data", "stats", MISSING], "meta/info.json"),
        "data plot": (["data", "plot", MISSING], "meta/info.json"),
        "model keys": (["model", "keys", "nope"], "unknown model preset 'nope'"),
        "model info": (["model", "info", "nope"], "unknown model preset 'nope'"),
        "finetune dataset": (["finetune", "--dataset-path", MISSING, "--data-config", "libero_panda",
                              "--base-model", "tiny", "--output-dir", str(tmp_path / "run")], "meta/info.json"),
        "finetune no modality": (["finetune", "--dataset-path", MISSING, "--base-model", "tiny",
                                  "--output-dir", str(tmp_path / "run")], "meta/modality.json"),
        "finetune data config": (["finetune", "--dataset-path", MISSING, "--data-config", "nope",
                                  "--base-model", "tiny", "--output-dir", str(tmp_path / "run")], "unknown data config 'nope'"),
        "finetune steps": (["finetune", "--dataset-path", MISSING, "--max-steps", "0"], "--max-steps"),
        "serve": (["serve", "--model-path", MISSING, "--embodiment-tag", "new_embodiment"], MISSING),
        "eval open-loop checkpoint": (["eval", "open-loop", "--dataset-path", MISSING, "--embodiment-tag",
                                       "new_embodiment", "--model-path", MISSING], MISSING),
        "eval open-loop source": (["eval", "open-loop", "--dataset-path", MISSING, "--embodiment-tag",
                                   "new_embodiment"], "exactly one of --model-path and --server"),
        "eval sim source": (["eval", "sim", "--suite", "libero_object", "--model-path", MISSING, "--server",
                             "localhost:5555"], "exactly one of model_path and server"),
        "eval sim suite": (["eval", "sim", "--suite", "nope", "--model-path", MISSING, "--out",
                            str(tmp_path / "eval")], "LIBERO"),
        "sim generate": (["sim", "generate", "--suite", "nope", "--out", str(tmp_path / "gen")], "LIBERO"),
        "demo": (["demo", "--out", str(tmp_path / "old_demo")], "old_demo"),
    }


CASES = ["data info", "data validate", "data stats", "data plot", "model keys", "model info",
         "finetune dataset", "finetune no modality", "finetune data config", "finetune steps", "serve",
         "eval open-loop checkpoint", "eval open-loop source", "eval sim source", "eval sim suite",
         "sim generate", "demo"]


@pytest.mark.parametrize("case", CASES)
def test_user_mistake_is_one_error_line_and_exit_2(case, tmp_path, capsys):
    from groot.sim.libero import libero_available

    argv, mentions = dataset_and_checkpoint_free_mistakes(tmp_path)[case]
    if case == "demo" and not libero_available():
        mentions = "LIBERO"
    assert main(argv) == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert lines[-1].startswith("error: ") and mentions in lines[-1], err
    assert "Traceback" not in err


def test_a_bug_keeps_its_traceback(monkeypatch):
    import groot.data.commands as data_commands

    def broken(cfg):
        raise RuntimeError("a bug")

    monkeypatch.setattr(data_commands, "run_info", broken)
    with pytest.raises(RuntimeError, match="a bug"):
        main(["data", "info", MISSING])
