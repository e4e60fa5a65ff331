"""The local Prefect server's side of `altlas-flows up` and `down`: stopping the server
answering on a port (`cmd_down`), stopping started components in reverse (`stop_components`),
and this command as it can be typed from any folder (`own_command`).

The commands themselves are composed in `api.console` (`api.up` starts the whole engine).
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from deployments.local import (
    CannotStop,
    Component,
    ServerRecord,
    remove_stale_records,
    stop_server_on,
)

EXAMPLES = Path(__file__).resolve().parent.parent / "definitions" / "examples"


def stop_components(components: Sequence[Component]) -> None:
    """Stop components in the reverse of the order they were started."""
    for component in reversed(components):
        component.stop()


def cmd_down(args: argparse.Namespace, out: TextIO = sys.stdout) -> int:
    """Stop the Prefect server answering on the port, if it is one; say what was stopped."""
    home = data_home()
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
    return f"{shlex.quote(sys.executable)} -m api.console"


def data_home() -> Path:
    """Where the embedded default keeps its data: `ALTLAS_HOME`, default `./.altlas`."""
    return Path(os.environ.get("ALTLAS_HOME", ".altlas")).resolve()
