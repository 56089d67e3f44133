"""The `groot` command. Each area registers its sub-commands; `groot <command> --help` documents
every flag. A user's mistake (any `GrootError`) ends with one `error:` line and exit status 2; a bug
keeps its traceback (exit 1)."""

from __future__ import annotations

import argparse
import importlib
import os
import sys

# module that defines `register(subparsers)` for each top-level command group
COMMAND_MODULES = [
    "groot.data.commands",
    "groot.model.commands",
    "groot.train.commands",
    "groot.serve.commands",
    "groot.eval.commands",
    "groot.sim.commands",
    "groot.rl.commands",
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
    from groot.errors import GrootError
    from groot.utils.worker_pool import WorkerDied

    try:
        result = handler(args)
    except GrootError as error:  # the user's mistake (path, key, value): one line, exit 2
        print("error: " + " ".join(line.strip() for line in str(error).splitlines() if line.strip()),
              file=sys.stderr)
        return 2
    except WorkerDied as error:  # a crash in a worker process: its traceback is not ours to show
        print(f"error: {error}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # the reader of stdout left (`groot model keys n1.6-3b | head`)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
        return 0
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
