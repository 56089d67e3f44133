"""`groot demo`: the offline end-to-end demo (placeholder until the simulator lands)."""


def register(subparsers) -> None:
    """Placeholder."""
