"""The `groot` command. Each area registers its sub-commands; `groot <command> --help` documents
every flag."""

from __future__ import annotations

import argparse
import importlib
import sys

# module that defines `register(subparsers)` for each top-level command group
COMMAND_MODULES = [
    "groot.data.commands",
    "groot.model.commands",
    "groot.train.commands",
    "groot.serve.commands",
    "groot.eval.commands",
    "groot.sim.commands",
    "groot.demo",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="groot",
        description="GR00T N1.5 robot foundation model: data, fine-tuning, serving, evaluation.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in COMMAND_MODULES:
        importlib.import_module(module).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = getattr(args, "_handler", None)
    if handler is None:  # a group without its sub-command: show that group's help
        group = getattr(args, "_group_parser", parser)
        group.print_help()
        return 2
    result = handler(args)
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
