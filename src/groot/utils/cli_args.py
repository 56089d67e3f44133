"""Dataclass <-> argparse: every command is a dataclass, every field is a flag, its help the docs.

Declare fields with `arg(default, "help text")`; `positional=True` makes a positional argument.
Booleans become `--flag/--no-flag`, `list[...]` fields take one or more values, `Literal[...]`
fields list their choices, and `X | None` fields default to None.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from typing import Any, Literal, Union


def arg(default: Any = dataclasses.MISSING, help: str = "", *, positional: bool = False,
        short: str | None = None) -> Any:
    """A dataclass field that is also a command-line flag."""
    meta = {"help": help, "positional": positional, "short": short}
    if isinstance(default, (list, dict, set)):
        frozen = list(default) if isinstance(default, list) else default
        return dataclasses.field(default_factory=lambda: type(frozen)(frozen), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def _unwrap_optional(tp: Any) -> tuple[Any, bool]:
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
    return tp, False


def add_dataclass_arguments(parser: argparse.ArgumentParser, cls: type) -> None:
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        tp, optional = _unwrap_optional(hints[f.name])
        meta = f.metadata
        help_text = meta.get("help", "")
        kwargs: dict[str, Any] = {}
        has_default = f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else None)
        origin = typing.get_origin(tp)
        if tp is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        elif origin is list:
            (item,) = typing.get_args(tp) or (str,)
            kwargs["nargs"] = "+"
            kwargs["type"] = item
        elif origin is Literal:
            kwargs["choices"] = list(typing.get_args(tp))
            kwargs["type"] = type(kwargs["choices"][0])
        else:
            kwargs["type"] = tp
        if has_default:
            kwargs["default"] = default
            if "default" not in help_text:  # help that explains its default already says it
                shown = "none" if default is None else default
                help_text = f"{help_text} (default: {shown})" if help_text else f"(default: {shown})"
        kwargs["help"] = help_text
        if meta.get("positional"):
            if has_default:
                kwargs["nargs"] = "?"
            parser.add_argument(f.name, metavar=f.name.upper(), **kwargs)
            continue
        flags = [f"--{f.name.replace('_', '-')}"]
        if meta.get("short"):
            flags.insert(0, meta["short"])
        if not has_default and not optional:
            kwargs["required"] = True
        parser.add_argument(*flags, dest=f.name, **kwargs)


def dataclass_from_args(cls: type, namespace: argparse.Namespace) -> Any:
    values = {f.name: getattr(namespace, f.name) for f in dataclasses.fields(cls)}
    return cls(**values)


def add_command(subparsers: Any, name: str, cls: type, run: Any, help: str) -> argparse.ArgumentParser:
    """Register `name` whose flags are the fields of `cls`; `run(cfg)` is called with an instance."""
    parser = subparsers.add_parser(name, help=help, description=help)
    add_dataclass_arguments(parser, cls)
    parser.set_defaults(_handler=lambda ns: run(dataclass_from_args(cls, ns)))
    return parser


def add_group(subparsers: Any, name: str, help: str) -> Any:
    """A command group (`groot data ...`); returns the subparsers to add its commands to."""
    parser = subparsers.add_parser(name, help=help, description=help)
    parser.set_defaults(_group_parser=parser)
    return parser.add_subparsers(dest=f"{name}_command", metavar="COMMAND")


def command_line(cls: type, values: dict[str, Any]) -> list[str]:
    """The arguments that parse back to `cls(**values)`: fields at their default are left out, booleans
    become `--flag` / `--no-flag`, lists their items; names not in `cls` are ignored."""
    args: list[str] = []
    for f in dataclasses.fields(cls):
        if f.name not in values:
            continue
        value = values[f.name]
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else dataclasses.MISSING)
        if value == default or value is None:
            continue
        items = [str(v) for v in value] if isinstance(value, (list, tuple)) else [str(value)]
        if f.metadata.get("positional"):
            args += items
        elif isinstance(value, bool):
            args.append(f"--{'' if value else 'no-'}{f.name.replace('_', '-')}")
        else:
            args += [f"--{f.name.replace('_', '-')}", *items]
    return args
