"""`groot eval ...` sub-commands."""


def register(subparsers) -> None:
    """Placeholder until the eval commands land."""
