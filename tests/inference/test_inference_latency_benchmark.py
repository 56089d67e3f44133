"""benchmarks/latency.py on the CPU: N1.5 and N1.6 tiny presets through its command line (the exact engine
equals the eager model, which equals `get_action`), and the reference prompts of the 3B presets."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

from groot.inference.engine import release_geometry
from groot.model.config import preset_config
from groot.model.processor import GrootProcessor
from groot.model.tokenizer import ByteTokenizer

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.fixture(scope="module")
def latency():
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(BENCHMARKS))  # its sibling `kernel_profile`
        spec = importlib.util.spec_from_file_location("latency_benchmark", BENCHMARKS / "latency.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        yield module


@pytest.mark.parametrize("preset, model_image, image_tokens, state_dim", [
    ("tiny", [56, 56], 16, 64),
    ("n1.6-tiny", [56, 56], 4, 32),
])
def test_tiny_run_records_its_setting_and_exact_equals_eager(latency, monkeypatch, tmp_path, preset,
                                                             model_image, image_tokens, state_dim):
    out = tmp_path / "latency.json"
    monkeypatch.setattr(sys, "argv", [
        "latency.py", "--preset", preset, "--device", "cpu", "--dtype", "float32", "--iters", "3",
        "--warmup", "1", "--batch-sizes", "1", "2", "--variants", "exact", "fast", "--out", str(out)])
    latency.main()
    result = json.loads(out.read_text())
    config = preset_config(preset)
    assert result["preset"] == preset and result["generation"] == config.generation
    assert result["device"].startswith("cpu") and result["raw_image"] == 256
    assert result["model_image"] == model_image and result["image_tokens"] == image_tokens
    assert result["denoising_steps"] == 4 and result["state_dim"] == state_dim
    head = config.action_head_cfg
    assert result["action_chunk"] == [head.action_horizon, head.action_dim]
    assert result["reference_prompt_tokens"] is None  # tiny presets take the short instruction
    assert "failed" not in result
    for batch in ("1", "2"):
        exact = result["batches"][batch]["exact"]
        # eager stages (CPU transform, processor, head with get_action's masks) = engine = get_action
        assert exact["bit_identical_to_eager_model"]
        assert exact["max_abs_diff_model"] == 0.0 and exact["max_abs_diff_end_to_end"] == 0.0
        assert result["batches"][batch]["eager"]["chunks_per_s"] > 0


@pytest.mark.parametrize("preset, image_tokens, prompt_tokens", [
    ("n1.5-3b", 256, 286),
    ("n1.6-3b", 81, 81 + 23 + 4),
])
def test_reference_prompt_of_the_3b_presets(latency, preset, image_tokens, prompt_tokens):
    config = preset_config(preset)
    config.backbone_cfg.tokenizer = "bytes"
    config.backbone_cfg.image_token_id = ByteTokenizer().image_token_id
    processor = GrootProcessor.for_config(config)
    processor.tokenizer = latency.ChunkedByteTokenizer(config.backbone_cfg.llm.vocab_size)
    per_image = processor.image_tokens(*release_geometry(config).output_size(256, 256))
    assert per_image == image_tokens
    reference = latency.reference_prompt_tokens(config, per_image)
    assert reference == prompt_tokens
    language = latency.instruction_for(processor, reference, per_image)
    ids = processor.prompt_ids(language, 1, per_image)
    assert len(ids) == prompt_tokens
    assert ids.count(config.backbone_cfg.image_token_id) == image_tokens
    assert language.startswith("pick up the")
