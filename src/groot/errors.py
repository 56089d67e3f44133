"""Errors that tell the user exactly what is wrong: which file, which key, expected vs. found."""

from __future__ import annotations

from pathlib import Path
from typing import Any


class GrootError(Exception):
    """Base class of every error groot raises on purpose."""


class DatasetError(GrootError, ValueError):
    """A dataset file is missing or malformed.

    >>> DatasetError("meta/info.json", "fps", "a positive number", "'abc'")
    DatasetError('meta/info.json: key \\'fps\\': expected a positive number, found \\'abc\\'')
    """

    def __init__(self, file: str | Path, key: str | None, expected: str, found: Any):
        self.file, self.key, self.expected, self.found = str(file), key, expected, found
        where = f"{file}: key {key!r}" if key else f"{file}"
        super().__init__(f"{where}: expected {expected}, found {found}")


class ConfigError(GrootError, ValueError):
    """A command-line option or configuration value that groot cannot use (unknown name, out of range,
    an output folder that already exists)."""


class OutputExistsError(ConfigError, FileExistsError):
    """An output path that must be new already exists."""


class ObservationError(GrootError, ValueError):
    """An observation passed to a policy has a missing key or a wrong dtype / shape / value."""


class CheckpointError(GrootError, ValueError):
    """A checkpoint directory is missing files or holds weights that do not fit the model."""


class NonFiniteError(GrootError, ArithmeticError):
    """A loss, gradient norm or action came out NaN or infinite."""
