"""`groot sim ...` sub-commands."""


def register(subparsers) -> None:
    """Placeholder until the sim commands land."""
