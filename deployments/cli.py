"""The `altlas-flows` command line: the interpreter's commands, `up` and `down`. Main entry: `main`.

`altlas-flows up` starts the embedded default: a local Prefect server (SQLite) with the example
workflows run once, and prints where the Prefect UI is. It stays in the foreground until Ctrl-C
(`--detach` returns once everything is ready, leaving the server running). `altlas-flows down`
stops the Prefect server answering on the port, after checking that it is one.

Before it exits, `main` delivers what its runs left behind (summary artifacts, Prefect's events),
so that Prefect's exit hooks find nothing left to send.
"""

from __future__ import annotations

import argparse
import os
import shlex
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from interpreter.cli import add_commands
from interpreter.local_server import local_api_url, local_port

if TYPE_CHECKING:
    from deployments.local import Component

EXAMPLES = Path(__file__).resolve().parent.parent / "definitions" / "examples"


def cmd_up(args: argparse.Namespace, out: TextIO = sys.stdout) -> int:
    """Start (or reuse) the local Prefect server, run the examples, print the addresses."""
    from deployments.local import LocalServer, PortTaken

    server = LocalServer(home=_home(), port=args.port)
    components: list[Component] = [server]  # started in this order, stopped in reverse
    started: list[Component] = []
    try:
        for component in components:
            if component.ensure_running(out):
                started.append(component)
    except PortTaken as exc:
        sys.stderr.write(
            f"altlas-flows up: {exc}; choose another port: {own_command()} up --port N\n"
        )
        _stop(started)
        return 1
    except RuntimeError as exc:
        sys.stderr.write(f"altlas-flows up: {exc}\n")
        _stop(started)
        return 1
    os.environ["PREFECT_API_URL"] = server.api_url
    if not args.no_examples:
        _run_examples(out)
    command = own_command()
    on_port = "" if args.port == local_port() else f" --port {args.port}"
    api = "" if server.api_url == local_api_url() else f"PREFECT_API_URL={server.api_url} "
    out.write(
        "\nALT_LAS Workflow Engine is up.\n"
        f"  Prefect UI:  {server.ui_url}\n"
        f"  Prefect API: {server.api_url}  (its docs: {server.ui_url}/docs)\n"
        f"  Run a workflow: {api}{command} run {shlex.quote(str(EXAMPLES / 'chain.json'))}\n"
    )
    if not started:
        out.write(
            "The server was already running; `up` leaves it as it is. "
            f"Stop it with: {command} down{on_port}\n"
        )
        return 0
    if args.detach:
        out.write(f"It keeps running; stop it with: {command} down{on_port}\n")
        return 0
    out.write("Press Ctrl-C to stop.\n")
    out.flush()
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        while all(component.alive() for component in started):
            time.sleep(0.5)
        out.write("the Prefect server stopped\n")
    except KeyboardInterrupt:
        out.write("stopping ...\n")
    finally:
        _deliver_run_records()  # while the server is still there
        _stop(started)
    return 0


def _stop(components: Sequence[Component]) -> None:
    for component in reversed(components):
        component.stop()


def cmd_down(args: argparse.Namespace, out: TextIO = sys.stdout) -> int:
    """Stop the Prefect server answering on the port, if it is one; say what was stopped."""
    from deployments.local import CannotStop, ServerRecord, remove_stale_records, stop_server_on

    home = _home()
    for line in remove_stale_records(home):
        out.write(f"{line}\n")
    try:
        stopped = stop_server_on(args.port)
    except CannotStop as exc:
        sys.stderr.write(f"altlas-flows down: {exc}\n")
        return 1
    if stopped is not None:
        out.write(
            f"stopped the Prefect server at http://127.0.0.1:{args.port} "
            f"(pid {stopped.pid}, data in {stopped.data_folder})\n"
        )
        return 0
    out.write(f"no Prefect server answers at 127.0.0.1:{args.port}: nothing to stop\n")
    record = ServerRecord.read(home)
    if record is not None and record.port != args.port and record.process() is not None:
        out.write(
            f"The server started from {home} answers on port {record.port}: "
            f"{own_command()} down --port {record.port}\n"
        )
    return 0


def own_command() -> str:
    """This `altlas-flows`, as a command that works from any folder: the absolute path of the
    console script being run, else the one next to this interpreter, else `python -m`."""
    script = Path(sys.argv[0])
    if script.name == "altlas-flows" and script.is_file():
        return shlex.quote(str(script.absolute()))
    sibling = Path(sys.executable).absolute().parent / "altlas-flows"
    if sibling.is_file():
        return shlex.quote(str(sibling))
    return f"{shlex.quote(sys.executable)} -m deployments.cli"


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
    port = local_port()
    up = commands.add_parser(
        "up",
        help="start the local engine (Prefect server on SQLite) with the examples",
        description="Start the embedded default on this machine: a Prefect server on "
        "127.0.0.1 (SQLite under ALTLAS_HOME, default ./.altlas), or the one already "
        "answering on the port; run the example workflows once; print where the Prefect UI "
        "and API are. Stays in the foreground until Ctrl-C unless --detach is given.",
    )
    up.add_argument(
        "--port",
        type=int,
        default=port,
        help=f"port of the Prefect server on 127.0.0.1 (default {port}: ALTLAS_LOCAL_PREFECT_PORT)",
    )
    up.add_argument(
        "--detach", action="store_true", help="return once ready and keep the server running"
    )
    up.add_argument("--no-examples", action="store_true", help="do not run the example workflows")
    up.set_defaults(handler=cmd_up)
    down = commands.add_parser(
        "down",
        help="stop the local Prefect server (the one answering on the port)",
        description="Stop the Prefect server answering on 127.0.0.1:PORT, whichever folder "
        "`up` was started from: the process listening on the port is checked to be a Prefect "
        "server, stopped with its process group, and waited for until the port is free; then "
        "what was stopped is printed (pid, port, data folder). Anything else answering there is "
        "described and left alone. A stale record of a server in ALTLAS_HOME (its process gone, "
        "or its pid reused) is removed without stopping anything.",
    )
    down.add_argument(
        "--port",
        type=int,
        default=port,
        help=f"port the server answers on (default {port}: ALTLAS_LOCAL_PREFECT_PORT)",
    )
    down.set_defaults(handler=cmd_down)
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
