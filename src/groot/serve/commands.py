"""`groot serve ...` sub-commands."""


def register(subparsers) -> None:
    """Placeholder until the serve commands land."""
