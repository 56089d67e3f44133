"""Helpers of the RL tests: a tiny `libero_panda` checkpoint (random weights, the synthetic statistics of
`groot.rl.synthetic`)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from groot.data.configs import libero_panda
from groot.model.config import preset_config
from groot.model.gr00t_n16 import model_class
from groot.rl.synthetic import synthetic_libero_metadata

CAMERA = 32  # camera resolution of the synthetic and the smoke-test environments


def make_tiny_checkpoint(root: Path, preset: str = "tiny", camera: int = CAMERA) -> Path:
    """A random-weight `tiny` (N1.5) or `n1.6-tiny` checkpoint, libero_panda data config sized to it."""
    torch.manual_seed(0)
    model = model_class(preset_config(preset)).from_preset(preset)
    head = model.config.action_head_cfg
    config = dataclasses.replace(libero_panda(), image_size=model.config.backbone_cfg.vision.image_size,
                                 max_state_dim=head.max_state_dim, max_action_dim=head.max_action_dim)
    metadata = {"new_embodiment": synthetic_libero_metadata(camera)}
    return model.save_pretrained(root / preset, metadata=metadata, data_config=config)
