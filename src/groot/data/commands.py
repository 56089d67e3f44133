"""`groot data ...` sub-commands."""


def register(subparsers) -> None:
    """Placeholder until the data commands land."""
