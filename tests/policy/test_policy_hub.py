"""Hub conventions for GR00TN15 and Policy: push_to_hub against a local stand-in of the hub that records
what would be sent, from_pretrained's hub options, and a saved Policy served with identical actions."""

from __future__ import annotations

import argparse
import dataclasses
import json
import shlex
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from policy_helpers import observation_of

from groot.model.gr00t_n15 import GR00TN15
from groot.policy import Policy
from groot.train.finetune_config import FinetuneConfig
from groot.utils.cli_args import add_dataclass_arguments


class HubStandIn:
    """Stands in for the Hugging Face hub: `HfApi.create_repo / create_branch / upload_folder` store each
    uploaded folder under `root/<repo>/<revision>` and record the call (files included);
    `snapshot_download` serves the files matching `allow_patterns` from a copy, like the hub cache."""

    def __init__(self, root: Path):
        self.root = root
        self.calls: list[tuple[str, dict]] = []

    def install(self, monkeypatch) -> HubStandIn:
        import huggingface_hub

        hub = self

        def create_repo(api, repo_id, **options):
            hub.calls.append(("create_repo", {"repo_id": repo_id, **options}))

        def create_branch(api, repo_id, **options):
            hub.calls.append(("create_branch", {"repo_id": repo_id, **options}))

        def upload_folder(api, *, repo_id, folder_path, revision=None, **options):
            folder = Path(folder_path)
            files = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())
            hub.calls.append(("upload_folder", {"repo_id": repo_id, "revision": revision, "files": files,
                                                **options}))
            stored = hub.root / repo_id / (revision or "main")
            shutil.rmtree(stored, ignore_errors=True)
            shutil.copytree(folder, stored)
            return SimpleNamespace(commit_url=f"stand-in://{repo_id}/commit/{len(hub.calls)}", pr_url=None)

        def snapshot_download(repo_id, *, allow_patterns=None, revision=None, cache_dir=None, **options):
            from huggingface_hub.utils import filter_repo_objects

            hub.calls.append(("snapshot_download", {"repo_id": repo_id, "revision": revision,
                                                    "cache_dir": cache_dir, **options}))
            stored = hub.root / repo_id / (revision or "main")
            names = [str(p.relative_to(stored)) for p in stored.rglob("*") if p.is_file()]
            snapshot = Path(cache_dir or hub.root / "cache") / repo_id / (revision or "main")
            for name in filter_repo_objects(names, allow_patterns=allow_patterns):
                (snapshot / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(stored / name, snapshot / name)
            return str(snapshot)

        monkeypatch.setattr(huggingface_hub.HfApi, "create_repo", create_repo)
        monkeypatch.setattr(huggingface_hub.HfApi, "create_branch", create_branch)
        monkeypatch.setattr(huggingface_hub.HfApi, "upload_folder", upload_folder)
        monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
        return self

    def last(self, name: str) -> dict:
        return [options for called, options in self.calls if called == name][-1]


@pytest.fixture
def hub(tmp_path, monkeypatch) -> HubStandIn:
    return HubStandIn(tmp_path / "hub").install(monkeypatch)


@pytest.fixture(scope="module")
def observation(raw_dataset):
    return observation_of(raw_dataset[5])


def _seeded_actions(policy: Policy, observation) -> dict[str, np.ndarray]:
    torch.manual_seed(1234)  # the flow-matching noise
    return policy.get_action(observation)


def _assert_same_actions(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> None:
    assert list(a) == list(b)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


# ---- GR00TN15 ----------------------------------------------------------------------------------------
def test_model_push_to_hub_uploads_a_loadable_checkpoint(hub, tmp_path):
    torch.manual_seed(0)
    model = GR00TN15.from_preset("tiny").eval()
    url = model.push_to_hub("me/tiny-groot", max_shard_size="300KB", token="hf_secret", private=True,
                            revision="v1", commit_message="first")
    assert url.startswith("stand-in://me/tiny-groot/")
    assert hub.last("create_repo") == {"repo_id": "me/tiny-groot", "token": "hf_secret", "private": True,
                                       "repo_type": "model", "exist_ok": True}
    assert hub.last("create_branch")["branch"] == "v1"
    upload = hub.last("upload_folder")
    assert (upload["revision"], upload["commit_message"], upload["token"]) == ("v1", "first", "hf_secret")
    shards = [f for f in upload["files"] if f.endswith(".safetensors")]
    assert len(shards) > 2 and shards[0] == f"model-00001-of-{len(shards):05d}.safetensors"
    assert {"config.json", "model.safetensors.index.json", "README.md"} <= set(upload["files"])
    card = (hub.root / "me/tiny-groot/v1/README.md").read_text()
    assert "GR00TN15.from_pretrained('me/tiny-groot')" in card

    loaded = GR00TN15.from_pretrained("me/tiny-groot", revision="v1", token="hf_secret",
                                      cache_dir=tmp_path / "cache", local_files_only=True)
    assert hub.last("snapshot_download") == {"repo_id": "me/tiny-groot", "revision": "v1",
                                             "cache_dir": tmp_path / "cache", "token": "hf_secret",
                                             "local_files_only": True}
    for key, tensor in model.state_dict().items():
        assert torch.equal(tensor, loaded.state_dict()[key]), key


def test_model_push_to_hub_can_open_a_pull_request(hub):
    GR00TN15.from_preset("tiny").push_to_hub("me/tiny-groot", revision="main", create_pr=True)
    assert not [name for name, _ in hub.calls if name == "create_branch"]  # a PR targets an existing branch
    assert hub.last("upload_folder")["create_pr"] is True


# ---- Policy ------------------------------------------------------------------------------------------
def test_saved_policy_serves_identical_actions(tiny_setup, observation, tmp_path):
    policy = Policy.from_pretrained(tiny_setup.checkpoint, tiny_setup.tag, device="cpu", denoising_steps=3)
    out = policy.save_pretrained(tmp_path / "artifact")
    files = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert files == ["README.md", "config.json", "experiment_cfg/data_config.json",
                     "experiment_cfg/metadata.json", "experiment_cfg/provenance.json", "model.safetensors",
                     "tokenizer/byte_tokenizer.json"]
    served = Policy.from_pretrained(out, device="cpu")  # the only embodiment block; no data config given
    assert served.embodiment_tag == tiny_setup.tag and served.denoising_steps is None
    assert json.loads((out / "config.json").read_text())["action_head_cfg"]["num_inference_timesteps"] == 3
    _assert_same_actions(_seeded_actions(policy, observation), _seeded_actions(served, observation))
    other_steps = Policy.from_pretrained(out, device="cpu", denoising_steps=4)
    assert not np.array_equal(_seeded_actions(other_steps, observation)["action.arm"],
                              _seeded_actions(served, observation)["action.arm"])


def test_model_card_records_training_command_data_and_eval_results(tiny_setup, observation, tmp_path):
    checkpoint = tmp_path / "checkpoint-4"
    shutil.copytree(tiny_setup.checkpoint, checkpoint)
    trained_with = FinetuneConfig(dataset_path=[str(tiny_setup.dataset), "more data"], max_steps=4,
                                  base_model="tiny", tune_projector=False, batch_size=4)
    (checkpoint / "training_state").mkdir()
    (checkpoint / "training_state/trainer_state.json").write_text(json.dumps(
        {"global_step": 4, "config": dataclasses.asdict(trained_with)}))
    policy = Policy.from_pretrained(checkpoint, tiny_setup.tag, device="cpu")
    out = policy.save_pretrained(tmp_path / "artifact", eval_results={"libero_object success": "68 / 100"})
    card = (out / "README.md").read_text()
    command = next(line for line in card.splitlines() if line.startswith("groot finetune"))
    parser = argparse.ArgumentParser()
    add_dataclass_arguments(parser, FinetuneConfig)
    parsed = parser.parse_args(shlex.split(command)[2:])
    assert FinetuneConfig(**vars(parsed)) == trained_with  # the command trains the same run again
    assert "--no-tune-projector" in command and "--output-dir" not in command  # defaults left out
    assert f"`{tiny_setup.dataset}`" in card and "Steps: 4" in card
    assert "| libero_object success | 68 / 100 |" in card
    assert "| `action.arm` | float32 [16, " in card and f"--embodiment-tag {tiny_setup.tag}" in card
    # the provenance travels with the artifact, so saving the served policy again keeps it
    again = Policy.from_pretrained(out, device="cpu").save_pretrained(tmp_path / "again")
    assert (again / "README.md").read_text().replace(str(tmp_path / "again"), str(out)) == card


def test_policy_push_to_hub_round_trip(hub, tiny_setup, observation, tmp_path):
    policy = Policy.from_pretrained(tiny_setup.checkpoint, tiny_setup.tag, device="cpu")
    policy.push_to_hub("me/tiny-policy", token="hf_secret", eval_results={"success": 0.5})
    upload = hub.last("upload_folder")
    assert upload["repo_id"] == "me/tiny-policy" and upload["revision"] is None
    assert "README.md" in upload["files"] and "experiment_cfg/metadata.json" in upload["files"]
    card = (hub.root / "me/tiny-policy/main/README.md").read_text()
    assert "Policy.from_pretrained('me/tiny-policy')" in card
    served = Policy.from_pretrained("me/tiny-policy", device="cpu", revision="main", token="hf_secret",
                                    cache_dir=tmp_path / "cache", local_files_only=True)
    call = hub.last("snapshot_download")
    assert (call["revision"], call["token"], call["cache_dir"], call["local_files_only"]) == (
        "main", "hf_secret", tmp_path / "cache", True)
    _assert_same_actions(_seeded_actions(policy, observation), _seeded_actions(served, observation))
    assert served.provenance["eval_results"] == {"success": 0.5}


def test_policy_needs_a_tag_when_the_checkpoint_has_several_embodiments(tiny_setup, tmp_path):
    from groot.errors import CheckpointError

    checkpoint = tmp_path / "two"
    shutil.copytree(tiny_setup.checkpoint, checkpoint)
    path = checkpoint / "experiment_cfg/metadata.json"
    blocks = json.loads(path.read_text())
    path.write_text(json.dumps({**blocks, "other": blocks[tiny_setup.tag]}))
    with pytest.raises(CheckpointError, match="exactly one embodiment block.*found new_embodiment, other"):
        Policy.from_pretrained(checkpoint, device="cpu")
    assert Policy.from_pretrained(checkpoint, "other", device="cpu").embodiment_tag == "other"
