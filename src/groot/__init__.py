"""groot: an open, fast implementation of the NVIDIA Isaac GR00T N1.5 VLA stack.

Importing `groot` is cheap: heavy modules (torch) load only when a name below is first used, so the
light robot-side client (`groot.serve.client`) never pulls in torch.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "Policy": "groot.policy",
    "GR00TN15": "groot.model.gr00t_n15",
    "LeRobotDataset": "groot.data.lerobot",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'groot' has no attribute {name!r}")


__all__ = ["__version__", *_LAZY]
