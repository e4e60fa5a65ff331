"""The `altlas-flows` command line: the interpreter's commands plus `up`. Main entry: `main`.

`altlas-flows up` starts the embedded default: a local Prefect server (SQLite) with the example
workflows run once, and prints where the Prefect UI is. It stays in the foreground until Ctrl-C
(`--detach` returns once everything is ready, leaving the server running).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from interpreter.cli import add_commands

EXAMPLES = Path(__file__).resolve().parent.parent / "definitions" / "examples"


def cmd_up(args: argparse.Namespace, out: TextIO = sys.stdout) -> int:
    """Start (or reuse) the local Prefect server, run the examples, print the addresses."""
    from deployments.local import LocalServer

    server = LocalServer(home=_home(), port=args.port)
    home = server.home
    out.write(f"starting the Prefect server (SQLite in {home}) ...\n")
    out.flush()
    started = server.start()
    os.environ["PREFECT_API_URL"] = server.api_url
    if not args.no_examples:
        _run_examples(out)
    out.write(
        "\nALT_LAS Workflow Engine is up.\n"
        f"  Prefect UI:  {server.ui_url}\n"
        f"  Prefect API: {server.api_url}  (its docs: {server.ui_url}/docs)\n"
        f"  Run a workflow: PREFECT_API_URL={server.api_url} "
        "altlas-flows run definitions/examples/chain.json\n"
    )
    out.flush()
    if args.detach or not started:
        if not started:
            out.write("(the server was already running; leaving it as it is)\n")
        return 0
    out.write("Press Ctrl-C to stop.\n")
    out.flush()
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        server.wait()
    except KeyboardInterrupt:
        out.write("stopping ...\n")
    finally:
        server.stop()
    return 0


def cmd_down(args: argparse.Namespace, out: TextIO = sys.stdout) -> int:
    """Stop the server `altlas-flows up --detach` left running."""
    from deployments.local import LocalServer

    stopped = LocalServer(home=_home(), port=args.port).stop_recorded()
    out.write("stopped the local Prefect server\n" if stopped else "no local server was running\n")
    return 0


def _home() -> Path:
    """Where the embedded default keeps its data: `ALTLAS_HOME`, default `./.altlas`."""
    return Path(os.environ.get("ALTLAS_HOME", ".altlas")).resolve()


def _interrupt(signum: int, frame: object) -> None:
    """SIGTERM stops `up` the way Ctrl-C does."""
    raise KeyboardInterrupt


def _run_examples(out: TextIO) -> None:
    from interpreter import ParameterError, run_workflow

    for path in sorted(EXAMPLES.glob("*.json")):
        try:
            result = run_workflow(path)
        except ParameterError as exc:
            needs = ", ".join(p.path.lstrip("/") for p in exc.problems)
            out.write(f"  example {path.stem:<16} not run: needs parameters ({needs})\n")
            continue
        out.write(f"  example {path.stem:<16} {result.state:<10} flow run {result.flow_run_id}\n")
        out.flush()


def build_parser() -> argparse.ArgumentParser:
    """The whole `altlas-flows` parser."""
    parser = argparse.ArgumentParser(
        prog="altlas-flows",
        description="ALT_LAS Workflow Engine: JSON workflows run as Prefect flows.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_commands(commands)
    up = commands.add_parser(
        "up",
        help="start the local engine (Prefect server on SQLite) with the examples",
        description="Start the embedded default on this machine and print where it is.",
    )
    up.add_argument("--port", type=int, default=4200, help="Prefect server port (default 4200)")
    up.add_argument("--detach", action="store_true", help="return once ready; keep it running")
    up.add_argument("--no-examples", action="store_true", help="do not run the examples")
    up.set_defaults(handler=cmd_up)
    down = commands.add_parser("down", help="stop the server `up --detach` left running")
    down.add_argument("--port", type=int, default=4200)
    down.set_defaults(handler=cmd_down)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `altlas-flows` console script."""
    args = build_parser().parse_args(argv)
    code: int = args.handler(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
