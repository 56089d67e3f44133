from __future__ import annotations

import json

import pytest

from groot.demo import plot_loss_curve


def test_loss_curve_png_from_metrics_jsonl(tmp_path):
    metrics = tmp_path / "metrics.jsonl"
    records = [{"step": step, "loss": 1.0 / step, "lr": 1e-4} for step in range(1, 6)]
    metrics.write_text("".join(json.dumps(r) + "\n" for r in records))
    png = plot_loss_curve(metrics, tmp_path / "loss.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 1000


def test_loss_curve_needs_loss_records(tmp_path):
    metrics = tmp_path / "metrics.jsonl"
    metrics.write_text(json.dumps({"step": 1, "eval_loss": 0.5}) + "\n")
    with pytest.raises(ValueError, match="no records with 'step' and 'loss'"):
        plot_loss_curve(metrics, tmp_path / "loss.png")
