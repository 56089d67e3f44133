"""Model samples with raw-resolution camera frames for the inference tests, and the eager reference."""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from groot.data import image_ops
from groot.inference.engine import release_geometry
from groot.model.config import preset_config
from groot.model.gr00t_n16 import model_class
from groot.model.processor import GrootProcessor
from groot.model.tokenizer import ByteTokenizer

RAW_SIZE = 64  # raw camera frames; the tiny preset's model size is 56


def make_sample(rng: np.random.Generator, language: str, num_images: int = 1, embodiment_id: int = 3,
                raw_size: int | tuple[int, int] = RAW_SIZE, state_dim: int = 64) -> dict:
    height, width = (raw_size, raw_size) if isinstance(raw_size, int) else raw_size
    return {"images": rng.integers(0, 256, (num_images, height, width, 3), dtype=np.uint8),
            "language": language,
            "state": rng.standard_normal((1, state_dim)).astype(np.float32),
            "embodiment_id": embodiment_id}


def eager_actions(model, processor, samples, noise):
    """The reference: CPU transform (centre crop + resize), processor, GR00TN15.get_action."""
    size = processor.image_size
    transformed = [dict(s, images=image_ops.crop_resize(torch.from_numpy(s["images"]), 0.95, size).numpy())
                   for s in samples]
    return model.get_action(processor(transformed), noise=noise)["action_pred"]


def random_bf16_model(preset: str, device: str = "cuda"):
    """A preset's model with random weights (seed 0) in bf16 on `device`, with the byte tokenizer,
    in eval mode -> (model, processor)."""
    cfg = preset_config(preset)
    cfg.backbone_cfg.tokenizer = "bytes"
    cfg.backbone_cfg.image_token_id = ByteTokenizer().image_token_id
    torch.manual_seed(0)
    with torch.device(device):
        model = model_class(cfg)(cfg)
    return model.to(torch.bfloat16).eval(), GrootProcessor.for_config(cfg)


def eager_on_engine_pixels(model, processor, engine, samples, noise):
    """The model's get_action on the pixels the engine computed from the raw frames (prompt and state
    from the CPU chain: the release geometry, then the processor)."""
    staged = engine.stage(samples, noise)
    engine.encode(staged)
    geometry = release_geometry(model.config)
    transformed = [dict(s, images=geometry(torch.from_numpy(s["images"])).numpy()) for s in samples]
    batch = processor(transformed).to(engine.device)
    batch = dataclasses.replace(batch, pixel_values=engine.pixels(staged).clone())
    return model.get_action(batch, noise=noise)["action_pred"].float()
