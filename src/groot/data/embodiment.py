"""Embodiment tags and the projector (category) index each one selects in the action head (spec 5).

The tag names the robot family a dataset comes from; its index picks one of the 32 per-embodiment
state/action encoders and decoders, and the tag also picks the statistics block of
`experiment_cfg/metadata.json`. `new_embodiment` is the slot left free for fine-tuning.
"""

from __future__ import annotations

from types import MappingProxyType

from groot.errors import ConfigError

NEW_EMBODIMENT = "new_embodiment"

EMBODIMENT_INDICES: MappingProxyType[str, int] = MappingProxyType({
    "new_embodiment": 31,
    "oxe_droid": 17,
    "agibot_genie1": 26,
    "gr1": 24,
    "so100": 2,  # LeRobot port only
    "unitree_g1": 3,  # LeRobot port only
})


def embodiment_index(tag: str) -> int:
    """Projector index of `tag`, e.g. `embodiment_index("new_embodiment") == 31`."""
    if tag not in EMBODIMENT_INDICES:
        valid = ", ".join(sorted(EMBODIMENT_INDICES))
        raise ConfigError(f"unknown embodiment tag {tag!r}; expected one of: {valid}")
    return EMBODIMENT_INDICES[tag]
