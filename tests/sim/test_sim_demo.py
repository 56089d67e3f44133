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


def test_demo_report_quotes_the_recorded_gpu_results(tmp_path):
    from groot.demo import DemoConfig, _demo_report
    from groot.sim.recorded import RECORDED_LIBERO_RESULTS

    protocol = {"suite": "libero_object", "episodes_per_task": 1, "action_horizon": 8, "max_steps": 280,
                "seed": 0, "image_size": 128}
    report = {"protocol": protocol, "success_rate": 0.0, "episodes": [{"success": False}],
              "tasks": {0: {"language": "pick", "successes": 0, "episodes": 1, "success_rate": 0.0,
                            "mean_steps": 280.0}}}
    loss = tmp_path / "loss.png"
    text = _demo_report(DemoConfig(out=str(tmp_path)), {"success_rate": 1.0}, report,
                        {"loss_curve": str(loss)}, {"total_s": 1.0}, tmp_path)
    first = RECORDED_LIBERO_RESULTS[0]
    assert f"`{first.preset}` preset: {first.successes} / {first.episodes}" in text
    assert "LIBERO-Object, `small` preset: 68 / 100 (68 %)" in text
