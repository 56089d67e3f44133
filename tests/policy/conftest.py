"""A tiny checkpoint trained for a few steps on a synthetic dataset, shared by the policy and eval tests."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from groot.data.configs import DataConfig
from groot.data.dataset import GrootDataset
from groot.data.synthetic import make_synthetic_dataset
from groot.data.writer import TASK_COLUMN
from groot.model.gr00t_n15 import GR00TN15
from groot.model.processor import GrootProcessor

TAG = "new_embodiment"
IMAGE_HW = (24, 32)
TRAIN_STEPS = 4


@dataclass
class TinySetup:
    checkpoint: Path
    dataset: Path
    data_config: DataConfig
    tag: str = TAG
    image_hw: tuple[int, int] = IMAGE_HW


def synthetic_data_config(image_size: int) -> DataConfig:
    state, action = ["state.arm", "state.gripper"], ["action.arm", "action.gripper"]
    return DataConfig("synthetic", ["video.front"], state, action, [TASK_COLUMN],
                      state_normalization={k: "min_max" for k in state},
                      action_normalization={k: "min_max" for k in action},
                      image_size=image_size, color_jitter=None)


@pytest.fixture(scope="session")
def tiny_setup(tmp_path_factory) -> TinySetup:
    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("policy")
    dataset_path = make_synthetic_dataset(root / "dataset", num_episodes=2, episode_length=20,
                                          image_size=IMAGE_HW)
    model = GR00TN15.from_preset("tiny")
    config = synthetic_data_config(model.config.backbone_cfg.vision.image_size)
    dataset = GrootDataset(dataset_path, config, TAG)
    processor = GrootProcessor.for_config(model.config)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    model.train()
    for step in range(TRAIN_STEPS):
        batch = processor([dataset[(7 * step + i) % len(dataset)] for i in range(4)])
        loss = model(batch)["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    checkpoint = model.save_pretrained(root / "checkpoint", metadata={TAG: dataset.metadata},
                                       data_config=config)
    return TinySetup(checkpoint=checkpoint, dataset=dataset_path, data_config=config)


@pytest.fixture(scope="module")
def raw_dataset(tiny_setup):
    """The tiny setup's dataset without transforms: raw steps as a robot would send them."""
    return GrootDataset(tiny_setup.dataset, tiny_setup.data_config, tiny_setup.tag, transform=False)
