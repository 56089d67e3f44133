"""`groot train ...` sub-commands."""


def register(subparsers) -> None:
    """Placeholder until the train commands land."""
