"""`groot model ...` sub-commands."""


def register(subparsers) -> None:
    """Placeholder until the model commands land."""
