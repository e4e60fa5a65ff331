"""The `altlas-flows` command line, composed from each package's commands. Main entry: `main`.

- the interpreter's: `validate`, `run`, `pieces list|show` (`interpreter.cli`);
- the service's: `db upgrade`, `tenants ...`, `runs ...`, `api`, `worker`, and the local
  engine's `up` and `down` (`api.cli`; they import the service only when they run).

This module alone imports every package. Before it exits, `main` delivers what runs of this
process left behind (summary artifacts, Prefect's events), so that Prefect's exit hooks find
nothing left to send.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from api import cli as service_commands
from interpreter import cli as interpreter_commands


def build_parser() -> argparse.ArgumentParser:
    """The whole `altlas-flows` parser."""
    parser = argparse.ArgumentParser(
        prog="altlas-flows",
        description="ALT_LAS Workflow Engine: JSON workflows run as Prefect flows.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    interpreter_commands.add_commands(commands)
    service_commands.add_commands(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `altlas-flows` console script."""
    args = build_parser().parse_args(argv)
    try:
        code: int = args.handler(args)
    finally:
        _deliver_run_records()
    return code


def _deliver_run_records() -> None:
    """Send what this process's runs left behind (artifacts, Prefect's events) and wait."""
    if "interpreter.run.background" in sys.modules:  # a workflow ran in this process
        from interpreter.run.background import flush

        flush()


if __name__ == "__main__":
    sys.exit(main())
