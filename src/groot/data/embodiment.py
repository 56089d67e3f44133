"""Embodiment tags and the projector (category) index each one selects in the action head (spec 5).

The tag names the robot family a dataset comes from; its index picks one of the 32 per-embodiment
state/action encoders and decoders, and the tag also picks the statistics block of
`experiment_cfg/metadata.json`. `new_embodiment` is the slot left free for fine-tuning. N1.5 and N1.6
number the slots differently (N1.6 spec 5: the N1.5 indices are not reused), so each generation has its
own table; a data config names the one its model reads (`DataConfig.embodiment_table`).
"""

from __future__ import annotations

from types import MappingProxyType

from groot.errors import ConfigError

NEW_EMBODIMENT = "new_embodiment"

EMBODIMENT_INDICES: MappingProxyType[str, int] = MappingProxyType({  # N1.5
    "new_embodiment": 31,
    "oxe_droid": 17,
    "agibot_genie1": 26,
    "gr1": 24,
    "so100": 2,  # LeRobot port only
    "unitree_g1": 3,  # LeRobot port only
})
N16_EMBODIMENT_INDICES: MappingProxyType[str, int] = MappingProxyType({
    "oxe_google": 0,
    "oxe_widowx": 1,
    "libero_panda": 2,
    "unitree_g1": 8,
    "new_embodiment": 10,
    "robocasa_panda_omron": 13,
    "oxe_droid": 16,
    "gr1": 20,
    "behavior_r1_pro": 24,
})
EMBODIMENT_TABLES: MappingProxyType[str, MappingProxyType[str, int]] = MappingProxyType({
    "n1.5": EMBODIMENT_INDICES, "n1.6": N16_EMBODIMENT_INDICES})


def embodiment_index(tag: str, table: str = "n1.5") -> int:
    """Projector index of `tag` in the model generation's table, e.g.
    `embodiment_index("new_embodiment") == 31`, `embodiment_index("new_embodiment", "n1.6") == 10`."""
    if table not in EMBODIMENT_TABLES:
        raise ConfigError(f"unknown embodiment table {table!r}; expected one of: "
                          f"{', '.join(EMBODIMENT_TABLES)}")
    indices = EMBODIMENT_TABLES[table]
    if tag not in indices:
        valid = ", ".join(sorted(indices))
        raise ConfigError(f"unknown embodiment tag {tag!r} for GR00T {table}; expected one of: {valid}")
    return indices[tag]
