"""The train engine sizes images, loader workers and torch threads to the model and the CPU."""

from __future__ import annotations

import json

import torch

from groot.data.configs import get_data_config
from groot.model.config import preset_config
from groot.train import data as train_data
from groot.train.finetune import FinetuneConfig, finetune


def test_transforms_resize_straight_to_a_smaller_model_input():
    config = get_data_config("libero_panda")
    tiny_size = preset_config("tiny").backbone_cfg.vision.image_size
    assert config.image_size > tiny_size
    fitted = train_data.fit_data_config_to_model(config, preset_config("tiny"))
    assert fitted.image_size == tiny_size
    assert {**fitted.to_dict(), "image_size": config.image_size} == config.to_dict()
    assert config.image_size == get_data_config("libero_panda").image_size  # the original is untouched


def test_a_data_config_smaller_than_the_model_input_is_kept():
    config = get_data_config("libero_panda")
    config.image_size = 32
    assert train_data.fit_data_config_to_model(config, preset_config("tiny")).image_size == 32
    assert train_data.fit_data_config_to_model(get_data_config("libero_panda"),
                                               preset_config("n1.5-3b")).image_size == 224


def test_cpu_loader_workers_leave_the_model_a_core(monkeypatch):
    monkeypatch.setattr(train_data, "cores_per_process", lambda: 2)
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert train_data.loader_workers(8, cpu) == 1
    assert train_data.loader_workers(0, cpu) == 0
    assert train_data.loader_workers(8, cuda) == 8
    monkeypatch.setattr(train_data, "cores_per_process", lambda: 1)
    assert train_data.loader_workers(4, cpu) == 0


def test_cores_are_shared_by_the_training_processes_of_a_machine(monkeypatch):
    monkeypatch.setattr(train_data.os, "sched_getaffinity", lambda pid: set(range(8)), raising=False)
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    assert train_data.cores_per_process() == 8
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")
    assert train_data.cores_per_process() == 2


def test_training_threads_fit_beside_the_workers_and_are_restored(monkeypatch):
    before = torch.get_num_threads()
    monkeypatch.setattr(train_data, "cores_per_process", lambda: 4)
    try:
        torch.set_num_threads(3)
        with train_data.cpu_training_threads(2, torch.device("cpu")):
            assert torch.get_num_threads() == 2
        assert torch.get_num_threads() == 3
        with train_data.cpu_training_threads(0, torch.device("cpu")):
            assert torch.get_num_threads() == 3  # never raised above the caller's setting
        with train_data.cpu_training_threads(3, torch.device("cuda")):
            assert torch.get_num_threads() == 3
    finally:
        torch.set_num_threads(before)


def test_checkpoint_records_the_image_size_the_model_was_trained_on(libero_dataset, tmp_path):
    checkpoint = finetune(FinetuneConfig(
        dataset_path=[str(libero_dataset)], output_dir=str(tmp_path / "run"), data_config="libero_panda",
        base_model="tiny", batch_size=2, max_steps=1, save_steps=1, learning_rate=1e-3, bf16=False,
        dataloader_num_workers=0, logging_steps=1, seed=0))
    saved = json.loads((checkpoint / "experiment_cfg" / "data_config.json").read_text())
    assert saved["image_size"] == preset_config("tiny").backbone_cfg.vision.image_size
