"""The ``movedisk`` command line.

Every command prints a short human report, or one JSON document with ``--json``.
A user error prints one line (``movedisk: <Type>: <message>``) and exits with
its own non-zero code; see harness/errors.py.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from collections.abc import Callable, Sequence
from typing import Any

import psycopg

from .errors import MovediskError, from_any_db_error

# Modules that add their own subcommands through ``register(subparsers)``.
COMMAND_MODULES = (
    "movedisk.cli_db", "movedisk.agent.cli", "movedisk.cli_move", "movedisk.cli_inventory",
)

Handler = Callable[[argparse.Namespace], Any]


def emit(args: argparse.Namespace, result: Any, human: Callable[[Any], str] | None = None) -> None:
    """Print ``result``: JSON with --json, else ``human(result)`` (or the JSON, indented)."""
    if getattr(args, "json", False):
        print(json.dumps(result, default=str, sort_keys=True))
    elif human is not None:
        text = human(result)
        if text:
            print(text)
    else:
        print(json.dumps(result, default=str, indent=2, sort_keys=True))


def common_options(parser: argparse.ArgumentParser, dsn: bool = False) -> argparse.ArgumentParser:
    """Options every subcommand accepts after its name (--json; --dsn where it connects)."""
    parser.add_argument(
        "--json", action="store_true", default=argparse.SUPPRESS, help="machine-readable output"
    )
    if dsn:
        target = parser.add_mutually_exclusive_group()
        target.add_argument(
            "--dsn",
            default=None,
            help="libpq connection string or URI of the engine's database (default: "
            "MOVEDISK_DSN, else the PG* variables; with none of them the command asks for one)",
        )
        target.add_argument(
            "--embedded",
            dest="dsn",
            action="store_const",
            const="embedded",
            help="use the embedded cluster (MOVEDISK_HOME) instead of a server",
        )
    return parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="movedisk",
        description="Crash-safe moves of VM disks between storage domains (oVirt's two phase "
        "commit move), kept in PostgreSQL.",
    )
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
            continue
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Handler = args.handler
    try:
        try:
            code = handler(args)
        except psycopg.Error as exc:
            # Whatever libpq or the server said, as one line with its own exit code.
            raise from_any_db_error(exc) from exc
    except MovediskError as exc:
        if args.json:
            print(json.dumps(exc.to_json(), default=str, sort_keys=True))
        else:
            one_line = " ".join(exc.message.split())
            print(f"movedisk: {type(exc).__name__}: {one_line}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("movedisk: interrupted", file=sys.stderr)
        return 130
    return int(code or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
