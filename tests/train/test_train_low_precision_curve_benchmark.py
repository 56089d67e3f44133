"""benchmarks/low_precision_curve.py on the CPU: both modes train on the `libero_panda` layout (whose
axis-angle state the data config turns into a 6-D rotation) and the record holds every step's loss."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "low_precision_curve.py"


def test_both_modes_train_and_the_record_holds_every_loss(tmp_path):
    spec = importlib.util.spec_from_file_location("low_precision_curve", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = tmp_path / "curve.json"
    steps = 4
    result = module.main(["--preset", "tiny", "--steps", str(steps), "--batch-size", "2", "--episodes", "2",
                          "--smooth", "2", "--out", str(out)])
    assert json.loads(out.read_text()) == json.loads(json.dumps(result))
    assert out.with_suffix(".png").stat().st_size > 0
    for mode in ("fp32", "bf16"):
        losses = result["losses"][mode]
        assert len(losses) == steps and all(loss > 0 for loss in losses)
    assert result["losses"]["bf16"][0] == pytest.approx(result["losses"]["fp32"][0], rel=0.05)  # same start
