"""The Hugging Face hub: fetch a checkpoint's files, publish a saved checkpoint folder.

Both go through `huggingface_hub` (`snapshot_download`, `HfApi.create_repo` / `create_branch` /
`upload_folder`), so tokens, caches, mirrors (`HF_ENDPOINT`) and offline mode (`HF_HUB_OFFLINE`) behave
as everywhere else in the Hugging Face ecosystem.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path


def download_snapshot(repo_id: str, allow_patterns: list[str], *, revision: str | None = None,
                      token: str | bool | None = None, cache_dir: str | Path | None = None,
                      local_files_only: bool = False) -> Path:
    """The files of `repo_id` matching `allow_patterns` at `revision`, in the hub cache -> their folder."""
    from huggingface_hub import snapshot_download

    return Path(snapshot_download(repo_id, revision=revision, token=token, cache_dir=cache_dir,
                                  local_files_only=local_files_only, allow_patterns=allow_patterns))


def upload_folder(folder: str | Path, repo_id: str, *, token: str | bool | None = None,
                  private: bool | None = None, revision: str | None = None,
                  commit_message: str | None = None, create_pr: bool = False) -> str:
    """Upload every file under `folder` to the model repo `repo_id` in one commit -> the commit's (or
    pull request's) URL. The repo is created when missing (`private` applies then); a `revision` other
    than main is created as a branch when missing, unless the commit opens a pull request against it."""
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    api.create_repo(repo_id, token=token, private=private, repo_type="model", exist_ok=True)
    if revision is not None and not create_pr:
        api.create_branch(repo_id, branch=revision, token=token, repo_type="model", exist_ok=True)
    info = api.upload_folder(repo_id=repo_id, folder_path=str(folder), repo_type="model", token=token,
                             revision=revision, create_pr=create_pr,
                             commit_message=commit_message or "Upload GR00T N1.5 checkpoint with groot")
    return str(getattr(info, "pr_url", None) or getattr(info, "commit_url", info))


def push_saved(save: Callable[[Path], Path], repo_id: str, **upload_options) -> str:
    """`save(directory)` writes a checkpoint into a temporary directory, which is uploaded to `repo_id`
    (`upload_options`: see `upload_folder`) and removed afterwards -> the commit's URL."""
    with tempfile.TemporaryDirectory(prefix="groot-push-") as tmp:
        folder = save(Path(tmp) / "checkpoint")
        return upload_folder(folder, repo_id, **upload_options)
