"""Which mesh and texture files a LIBERO suite's scenes load, so a simulator bundle can leave the rest out.

The LIBERO and robosuite packages ship every robot, object and scene of every benchmark (~0.9 GB
installed); one suite's scenes reference ~0.1 GB of it. `scene_asset_files` builds each task's scene
(no renderer) and reads the `file="..."` attributes of the MJCF robosuite generates for it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

# file types that make up the bulk of the asset folders; everything else (MJCF, JSON, BDDL) is kept
HEAVY_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".obj", ".stl", ".msh", ".dae", ".ply", ".hdr"})
_FILE_ATTRIBUTE = re.compile(r'\bfile="([^"]+)"')


def mjcf_files(xml: str) -> set[Path]:
    """Absolute paths named by `file="..."` attributes of an MJCF document."""
    return {Path(name).resolve() for name in _FILE_ATTRIBUTE.findall(xml)}


def scene_asset_files(suites: Iterable[str]) -> set[Path]:
    """Every file the scenes of every task of `suites` load (absolute paths). Needs the simulator."""
    from groot.sim.libero import LiberoEnv, num_tasks

    files: set[Path] = set()
    for suite in suites:
        for task_id in range(num_tasks(suite)):
            with LiberoEnv(suite, task_id, cameras=False) as env:
                files |= mjcf_files(env.inner.model.get_xml())
    return files
