"""Writes that readers never see half done: a file or a folder is built under a temporary name beside
its target, then renamed over it (a rename within one folder is atomic).

No fsync: a crash of the writing process leaves the old file or the new one, never a mix; surviving
a power loss is the caller's job (see `groot.train.checkpointing`).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any, Literal


@contextlib.contextmanager
def atomic_open(path: str | Path, mode: Literal["w", "wb"] = "w") -> Iterator[IO[Any]]:
    """A new file `.<name>.<pid>.<hex>.tmp` beside `path`, opened in `mode`; renamed over `path` when
    the block exits cleanly, deleted when it raises. Permissions follow the umask, as a plain open."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with open(fd, mode) as handle:
            yield handle
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    """Replace `path` with `text` in one step."""
    with atomic_open(path, "w") as handle:
        handle.write(text)


def atomic_write_json(path: str | Path, data: Any, indent: int | None = 2) -> None:
    """Replace `path` with `data` as JSON in one step."""
    atomic_write_text(path, json.dumps(data, indent=indent))


@contextlib.contextmanager
def atomic_dir(path: str | Path, tag: str = "tmp", replace: bool = False) -> Iterator[Path]:
    """An empty folder `.<name>.<tag>-<hex>` beside `path` (parents created) to fill; renamed to `path`
    when the block exits cleanly, deleted when it raises. An existing `path` is replaced when
    `replace` (moved aside to `.<name>.old-<hex>`, then deleted), else the rename raises OSError."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_name(f".{path.name}.{tag}-{uuid.uuid4().hex[:8]}")
    staging.mkdir()
    try:
        yield staging
        if replace and path.exists():
            old = path.with_name(f".{path.name}.old-{uuid.uuid4().hex[:8]}")
            path.rename(old)
            staging.rename(path)
            shutil.rmtree(old)
        else:
            os.rename(staging, path)
    finally:
        if staging.exists():  # the block or the rename raised
            shutil.rmtree(staging, ignore_errors=True)
