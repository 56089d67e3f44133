"""benchmarks/train_throughput.py on the CPU: N1.6 tiny through its command line (model-only in fp32 and
bf16 trained weights, end-to-end through `finetune`), and the model-only shapes of the 3B presets."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import pytest

from groot.model.config import preset_config

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.fixture(scope="module")
def throughput():
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(BENCHMARKS))  # its sibling `kernel_profile`
        spec = importlib.util.spec_from_file_location("train_throughput_benchmark",
                                                      BENCHMARKS / "train_throughput.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        yield module


def run_benchmark(module, monkeypatch, out: Path, *flags: str) -> dict:
    monkeypatch.setattr(sys, "argv", ["train_throughput.py", "--batch-size", "2", "--steps", "2", "--warmup",
                                      "1", "--out", str(out), *flags])
    module.main()
    return json.loads(out.read_text())


@pytest.mark.parametrize("trainable_dtype", ["fp32", "bf16"])
def test_n16_tiny_model_only(throughput, monkeypatch, tmp_path, trainable_dtype):
    result = run_benchmark(throughput, monkeypatch, tmp_path / "tt.json", "--preset", "n1.6-tiny",
                           "--skip-end-to-end", "--trainable-dtype", trainable_dtype)
    assert result["generation"] == "n1.6" and result["trainable_dtype"] == trainable_dtype
    model_only = result["model_only"]
    assert model_only["image_tokens"] == 4 and model_only["model_image"] == [56, 56]
    assert model_only["tokens_per_sample"] == 4 + 28  # N1.6 default text tokens
    assert math.isfinite(model_only["final_loss"]) and model_only["samples_per_s"] > 0


def test_n16_tiny_end_to_end_counts_its_prompt(throughput, monkeypatch, tmp_path):
    result = run_benchmark(throughput, monkeypatch, tmp_path / "tt.json", "--preset", "n1.6-tiny",
                           "--workers", "0")
    end_to_end = result["end_to_end"]
    assert end_to_end["samples_per_s"] > 0 and end_to_end["video_size"] == 256
    # a 256x256 frame -> 56x56 at n1.6-tiny's geometry: 4 image tokens, + the byte tokenizer's prompt
    assert end_to_end["tokens_per_sample"] > 4 + 28
    assert result["end_to_end_over_model_only"] is None  # different prompt lengths: no ratio


@pytest.mark.parametrize("preset, side, image_tokens", [
    ("n1.5-3b", 224, 256), ("tiny", 56, 16), ("n1.6-3b", 252, 81), ("n1.6-tiny", 56, 4)])
def test_model_only_batches_take_the_release_image_of_a_256_frame(throughput, preset, side, image_tokens):
    config = preset_config(preset)
    shapes = throughput.batch_shapes(config)
    assert shapes.backbone_cfg.vision.image_size == side
    assert shapes.backbone_cfg.num_image_tokens == image_tokens
    assert config.backbone_cfg.vision.image_size == preset_config(preset).backbone_cfg.vision.image_size
