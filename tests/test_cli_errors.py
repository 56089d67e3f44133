"""Every command answers a user's mistake with one `error:` line and exit status 2, never a traceback."""

from __future__ import annotations

import pytest

from groot.cli import main

MISSING = "/nonexistent/groot-test"
RUN = ["--output-dir", "{tmp}/run"]

# (command, argv with {tmp} for a fresh folder, text the error line must contain)
MISTAKES = [
    ("data info", ["data", "info", MISSING], "meta/info.json"),
    ("data validate", ["data", "validate", MISSING], "meta/info.json"),
    ("data stats", ["data", "stats", MISSING], "meta/info.json"),
    ("data plot", ["data", "plot", MISSING], "meta/info.json"),
    ("model keys", ["model", "keys", "nope"], "unknown model preset 'nope'"),
    ("model info", ["model", "info", "nope"], "unknown model preset 'nope'"),
    ("finetune dataset", ["finetune", "--dataset-path", MISSING, "--data-config", "libero_panda",
                          "--base-model", "tiny", *RUN], "meta/info.json"),
    ("finetune no modality", ["finetune", "--dataset-path", MISSING, "--base-model", "tiny", *RUN],
     "meta/modality.json"),
    ("finetune data config", ["finetune", "--dataset-path", MISSING, "--data-config", "nope",
                              "--base-model", "tiny", *RUN], "unknown data config 'nope'"),
    ("finetune steps", ["finetune", "--dataset-path", MISSING, "--max-steps", "0"], "--max-steps"),
    ("serve", ["serve", "--model-path", MISSING, "--embodiment-tag", "new_embodiment"], MISSING),
    ("eval open-loop checkpoint", ["eval", "open-loop", "--dataset-path", MISSING, "--embodiment-tag",
                                   "new_embodiment", "--model-path", MISSING], MISSING),
    ("eval open-loop source", ["eval", "open-loop", "--dataset-path", MISSING, "--embodiment-tag",
                               "new_embodiment"], "exactly one of --model-path and --server"),
    ("eval sim source", ["eval", "sim", "--suite", "libero_object", "--model-path", MISSING, "--server",
                         "localhost:5555"], "exactly one of model_path and server"),
    ("eval sim suite", ["eval", "sim", "--suite", "nope", "--model-path", MISSING, "--out", "{tmp}/eval"],
     "LIBERO"),
    ("sim generate", ["sim", "generate", "--suite", "nope", "--out", "{tmp}/gen"], "LIBERO"),
    ("demo", ["demo", "--out", "{tmp}/old_demo"], "old_demo"),  # holds a dataset/ of unknown origin
]


@pytest.mark.parametrize(("argv", "mentions"), [m[1:] for m in MISTAKES], ids=[m[0] for m in MISTAKES])
def test_user_mistake_is_one_error_line_and_exit_2(argv, mentions, tmp_path, capsys):
    from groot.sim.libero import libero_available

    (tmp_path / "old_demo" / "dataset").mkdir(parents=True)
    if argv[0] == "demo" and not libero_available():
        mentions = "LIBERO"
    assert main([arg.format(tmp=tmp_path) for arg in argv]) == 2
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


def test_a_reader_that_leaves_early_is_no_error():
    """`groot model keys n1.6-3b | head -1`: the closed pipe ends the command quietly with exit 0."""
    import subprocess
    import sys

    process = subprocess.Popen([sys.executable, "-m", "groot.cli", "model", "keys", "n1.6-3b"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert process.stdout.readline() == b"key\tshape\n"
    process.stdout.close()  # the reader leaves while the command still has ~1100 lines to print
    assert process.wait(timeout=120) == 0
    assert process.stderr.read() == b""
