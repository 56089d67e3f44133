import os

import pytest

from groot.train.checkpointing import load_trainer_state
from groot.train.finetune import FinetuneConfig, finetune
from groot.train.logging import read_metrics


@pytest.mark.slow
def test_two_process_gloo_run_trains_and_saves_once(libero_dataset, tmp_path, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    cfg = FinetuneConfig(dataset_path=[str(libero_dataset)], output_dir=str(tmp_path),
                         data_config="libero_panda",
                         base_model="tiny", batch_size=2, max_steps=2, save_steps=2, logging_steps=1,
                         dataloader_num_workers=0, num_gpus=2)
    final = finetune(cfg)  # relaunches itself under torchrun: 2 CPU processes, gloo
    state = load_trainer_state(final)
    assert state["world_size"] == 2 and state["global_step"] == 2
    assert sorted(os.listdir(final / "training_state")) == [
        "optimizer.json", "optimizer.safetensors", "rng-rank0.json", "rng-rank0.safetensors",
        "rng-rank1.json", "rng-rank1.safetensors", "trainer_state.json"]
    records = read_metrics(tmp_path / "metrics.jsonl")  # rank 0 only: one record per step
    assert [r["step"] for r in records] == [1, 2]
