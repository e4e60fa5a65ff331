"""The embedded default on one machine: a local Prefect server on SQLite. Main entry: `LocalServer`.

`altlas-flows up` starts its components (`Component`: today the Prefect server) in order and
stops them in reverse; `altlas-flows down` stops the server that answers on a port
(`stop_server_on`), whichever folder it was started from.

A server is found the way `up` finds it: by the port it answers on. Before anything is stopped,
the process listening on that port is looked up in `/proc` (listening socket → its inode → the
process holding it) and checked to be a Prefect server (`ServerProcess`); anything else there is
described, never signalled. A server `up` started leads its own process group (so the whole
group is stopped) and carries `ALTLAS_HOME` in its environment (so `down` can say where its data
is). `up` also records the server in `<ALTLAS_HOME>/prefect-server.json` (pid, port, process
start time); a record whose process is gone or whose pid now belongs to another process is stale:
it is removed, never acted on.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, TextIO

from interpreter.local_server import LOCAL_HOST, Answer, probe
from interpreter.settings import PREFECT_DEFAULTS

STOP_TIMEOUT_SECONDS = 20.0
"""How long a server gets to stop after SIGTERM before it is killed."""

LEGACY_PID_FILE = "prefect-server.pid"
"""What earlier versions recorded (a bare pid): removed on sight, never acted on."""


class Component(Protocol):
    """A long-running part of the local engine: `up` starts components in order (reusing one
    that already runs) and stops the ones it started in reverse order."""

    def ensure_running(self, out: TextIO) -> bool:
        """Start it unless it already runs, saying which on `out`; True when this call started
        it. Raises RuntimeError when it cannot run."""
        ...

    def alive(self) -> bool:
        """Whether what this object started still runs."""
        ...

    def stop(self) -> None:
        """Stop it if this object started it."""
        ...


# --- processes, as /proc shows them ------------------------------------------------------------


@dataclass(frozen=True)
class ServerProcess:
    """A process on this machine, as `/proc/<pid>` describes it."""

    pid: int
    start_ticks: int
    """Start time in clock ticks after boot (`/proc/<pid>/stat` field 22): with the pid, it
    names one process for good (a pid alone may be reused)."""
    process_group: int
    command: tuple[str, ...]
    environment: dict[str, str] = field(default_factory=dict, compare=False)
    """Empty when unreadable (another user's process)."""

    @classmethod
    def of(cls, pid: int) -> ServerProcess | None:
        """The live process `pid`, or None when there is none (or only a zombie)."""
        stat = _stat(pid)
        if stat is None or stat[0] == "Z":
            return None
        try:
            raw = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            raw = b""
        command = tuple(part.decode(errors="replace") for part in raw.split(b"\0") if part)
        environment: dict[str, str] = {}
        with contextlib.suppress(OSError):
            for entry in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0"):
                key, sep, value = entry.decode(errors="replace").partition("=")
                if sep:
                    environment[key] = value
        return cls(
            pid=pid,
            start_ticks=int(stat[19]),
            process_group=int(stat[2]),
            command=command,
            environment=environment,
        )

    @property
    def is_prefect_server(self) -> bool:
        """Whether its command line is a Prefect server (`prefect server start`, or uvicorn
        serving Prefect's API app)."""
        names = [Path(part).name for part in self.command]
        started = "prefect" in names and "server" in names and "start" in names
        return started or any("prefect.server.api" in part for part in self.command)

    @property
    def data_folder(self) -> str:
        """Where its data is: the `ALTLAS_HOME` `up` gave it, else its `PREFECT_HOME`."""
        env = self.environment
        if "ALTLAS_HOME" in env:
            return env["ALTLAS_HOME"]
        if "PREFECT_HOME" in env:
            return env["PREFECT_HOME"]
        return "~/.prefect (Prefect's default)" if env else "unknown"

    @property
    def command_line(self) -> str:
        text = shlex.join(self.command) if self.command else "?"
        return text if len(text) <= 160 else text[:157] + "..."

    def still_running(self) -> bool:
        """Whether this very process (same pid and start time) still runs."""
        stat = _stat(self.pid)
        return stat is not None and stat[0] != "Z" and int(stat[19]) == self.start_ticks

    def describe(self) -> str:
        return f"pid {self.pid}, data in {self.data_folder}"


def _stat(pid: int) -> list[str] | None:
    """`/proc/<pid>/stat` from field 3 (state) on; None when the process does not exist."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (OSError, ValueError):
        return None
    return text[text.rindex(")") + 2 :].split()


_LOOPBACK_OR_ANY = {
    "0100007F",  # 127.0.0.1
    "00000000",  # 0.0.0.0
    "00000000000000000000000000000000",  # ::
    "00000000000000000000000001000000",  # ::1
    "0000000000000000FFFF00000100007F",  # ::ffff:127.0.0.1
}


def listening_process(port: int) -> ServerProcess | None:
    """The process listening on TCP `port` of 127.0.0.1 (or of every address), or None when
    there is none or it is not visible to this user."""
    sockets: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                address, _, hex_port = fields[1].partition(":")
                listening = fields[3] == "0A"
                if listening and int(hex_port, 16) == port and address in _LOOPBACK_OR_ANY:
                    sockets.add(f"socket:[{fields[9]}]")
    if not sockets:
        return None
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            descriptors = list((entry / "fd").iterdir())
        except OSError:  # gone, or another user's
            continue
        for descriptor in descriptors:
            try:
                target = os.readlink(descriptor)
            except OSError:
                continue
            if target in sockets:
                return ServerProcess.of(int(entry.name))
    return None


# --- the record `up` keeps -----------------------------------------------------------------------


@dataclass(frozen=True)
class ServerRecord:
    """What `up` wrote about the server it started: `<home>/prefect-server.json`."""

    path: Path
    pid: int
    port: int
    start_ticks: int

    @classmethod
    def read(cls, home: Path) -> ServerRecord | None:
        path = record_path(home)
        try:
            data = json.loads(path.read_text())
            return cls(path, int(data["pid"]), int(data["port"]), int(data["start_ticks"]))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError):
            return cls(path, 0, 0, 0)  # unreadable: stale

    def process(self) -> ServerProcess | None:
        """The server process it names, if that very process still runs and is a Prefect
        server; None when the record is stale."""
        found = ServerProcess.of(self.pid) if self.pid > 0 else None
        if found is None or found.start_ticks != self.start_ticks or not found.is_prefect_server:
            return None
        return found

    def why_stale(self) -> str:
        found = ServerProcess.of(self.pid) if self.pid > 0 else None
        if self.pid <= 0:
            return "unreadable"
        if found is None:
            return f"process {self.pid} is gone"
        return f"pid {self.pid} now belongs to another process ({found.command_line})"

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)


def record_path(home: Path) -> Path:
    return home / "prefect-server.json"


def remove_stale_records(home: Path) -> list[str]:
    """Remove `home`'s record of a server that no longer runs (and any legacy pid file); never
    signal anything. Returns one line per removed file."""
    removed = []
    legacy = home / LEGACY_PID_FILE
    if legacy.exists():
        legacy.unlink(missing_ok=True)
        removed.append(f"removed {legacy} (an old-style record; nothing was stopped by it)")
    record = ServerRecord.read(home)
    if record is not None and record.process() is None:
        reason = record.why_stale()
        record.remove()
        removed.append(f"removed the stale record {record.path} ({reason}); nothing was stopped")
    return removed


# --- the server --------------------------------------------------------------------------------


class PortTaken(RuntimeError):
    """Something that is not a Prefect server answers on the port."""


@dataclass
class LocalServer:
    """A Prefect server process on this machine (started by us, or found already running)."""

    home: Path
    host: str = LOCAL_HOST
    port: int = 4200
    database_url: str | None = None
    """Prefect's own database; SQLite under `home` when None (the embedded default)."""
    process: subprocess.Popen[bytes] | None = None

    @property
    def record_file(self) -> Path:
        """Where a server started by `start` is recorded (pid, port, start time)."""
        return record_path(self.home)

    @property
    def log_file(self) -> Path:
        return self.home / "prefect-server.log"

    @property
    def api_url(self) -> str:
        return f"http://{self.host}:{self.port}/api"

    @property
    def ui_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def answer(self) -> Answer:
        """What answers on this server's port now."""
        return probe(self.port, self.host)

    def healthy(self) -> bool:
        """Whether a Prefect server answers at this address."""
        return self.answer() == "prefect"

    def ensure_running(self, out: TextIO) -> bool:
        """`Component.ensure_running`: reuse a Prefect server answering on the port, else
        start one. Raises PortTaken when something else answers there."""
        answer = self.answer()
        if answer == "prefect":
            found = listening_process(self.port)
            where = f" ({found.describe()})" if found else ""
            out.write(f"using the Prefect server already running at {self.ui_url}{where}\n")
            out.flush()
            return False
        if answer == "other":
            raise PortTaken(taken_message(self.port))
        out.write(f"starting the Prefect server at {self.ui_url} ({self._database()}) ...\n")
        out.flush()
        return self.start()

    def _database(self) -> str:
        if self.database_url or os.environ.get("PREFECT_API_DATABASE_CONNECTION_URL"):
            return "on the database PREFECT_API_DATABASE_CONNECTION_URL names"
        return f"SQLite in {self.home / 'prefect'}"

    def start(self, *, timeout: float = 120.0) -> bool:
        """Start the server unless a Prefect server already answers; True when this call
        started it.

        Raises:
            PortTaken: something that is not a Prefect server answers on the port.
            RuntimeError: the server did not become healthy within `timeout` seconds (its log
                is in `<home>/prefect-server.log`).
        """
        answer = self.answer()
        if answer == "prefect":
            return False
        if answer == "other":
            raise PortTaken(taken_message(self.port))
        self.home.mkdir(parents=True, exist_ok=True)
        env = {
            **os.environ,
            **{k: os.environ.get(k, v) for k, v in PREFECT_DEFAULTS.items()},
            "ALTLAS_HOME": str(self.home),  # lets `down` say where the data is
            "PREFECT_HOME": str(self.home / "prefect"),
            "PREFECT_API_DATABASE_CONNECTION_URL": self.database_url
            or os.environ.get(
                "PREFECT_API_DATABASE_CONNECTION_URL",
                f"sqlite+aiosqlite:///{self.home / 'prefect' / 'prefect.db'}",
            ),
        }
        env.pop("PREFECT_API_URL", None)
        # The UI finds its API from these settings, not from `server start --port`.
        env["PREFECT_SERVER_API_HOST"] = self.host
        env["PREFECT_SERVER_API_PORT"] = str(self.port)
        env["PREFECT_UI_API_URL"] = self.api_url
        command = [
            sys.executable, "-m", "prefect", "server", "start",
            "--host", self.host, "--port", str(self.port),
        ]  # fmt: skip
        with self.log_file.open("ab") as log:
            self.process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )
        self._write_record(self.process.pid)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self._remove_record()
                raise RuntimeError(f"the Prefect server exited; see {self.log_file}")
            if self.healthy():
                return True
            time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"the Prefect server did not start in {timeout:g}s; see {self.log_file}")

    def _write_record(self, pid: int) -> None:
        found = ServerProcess.of(pid)
        record = {
            "pid": pid,
            "port": self.port,
            "start_ticks": found.start_ticks if found else 0,
            "home": str(self.home),
        }
        self.record_file.write_text(json.dumps(record) + "\n")

    def _remove_record(self) -> None:
        record = ServerRecord.read(self.home)
        if record is not None and self.process is not None and record.pid == self.process.pid:
            record.remove()

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def wait(self) -> None:
        """Block until the server this object started exits."""
        if self.process is not None:
            self.process.wait()

    def stop(self) -> None:
        """Stop the server (its whole process group) if this object started it."""
        if self.process is not None:
            if self.process.poll() is None:
                _signal_group(self.process.pid, signal.SIGTERM)
                try:
                    self.process.wait(timeout=STOP_TIMEOUT_SECONDS)
                except subprocess.TimeoutExpired:
                    _signal_group(self.process.pid, signal.SIGKILL)
                    self.process.wait()
            self._remove_record()
        self.process = None


def _signal_group(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signum)


def taken_message(port: int) -> str:
    """What answers on `port` when it is not a Prefect server, and what to do about it."""
    found = listening_process(port)
    what = (
        f"process {found.pid} ({found.command_line})"
        if found
        else f"a process this user cannot see (`ss -ltnp 'sport = :{port}'` names it)"
    )
    return f"{LOCAL_HOST}:{port} is taken by {what}, which is not a Prefect server"


# --- stopping a server found by its port ---------------------------------------------------------


class CannotStop(RuntimeError):
    """What answers on the port is not a Prefect server this user can stop; says what it is."""


def stop_server_on(port: int, *, timeout: float = STOP_TIMEOUT_SECONDS) -> ServerProcess | None:
    """Stop the Prefect server answering on 127.0.0.1:`port`; return the process stopped, or
    None when nothing answers there.

    The process listening on the port must be a Prefect server (command line and health
    check). A server that leads its process group (as `up` starts it) is stopped with its
    group, any other only itself: SIGTERM, then SIGKILL after `timeout` seconds. Returns once
    the port no longer answers. Its record (in the `ALTLAS_HOME` it was started with) is removed.

    Raises:
        CannotStop: something else answers, the process is not visible to this user or may not
            be signalled, or it did not stop; the message says what and how to stop it.
    """
    answer = probe(port)
    if answer == "free":
        return None
    found = listening_process(port)
    if found is None:
        kind = (
            "a Prefect server" if answer == "prefect" else "something that is not a Prefect server"
        )
        raise CannotStop(
            f"{kind} answers at {LOCAL_HOST}:{port}, but its process is not visible to this user: "
            f"stop it where it was started (`sudo ss -ltnp 'sport = :{port}'` names it)"
        )
    if answer != "prefect" or not found.is_prefect_server:
        raise CannotStop(
            f"{LOCAL_HOST}:{port} is answered by process {found.pid} ({found.command_line}), "
            f"which is not a Prefect server: left alone. Stop it with `kill {found.pid}` if "
            "that is what you want."
        )
    whole_group = found.process_group == found.pid

    def send(signum: int) -> None:
        if not found.still_running():  # never signal a pid that was reused meanwhile
            return
        try:
            if whole_group:
                os.killpg(found.pid, signum)
            else:
                os.kill(found.pid, signum)
        except ProcessLookupError:
            pass
        except PermissionError:
            raise CannotStop(
                f"not allowed to stop the Prefect server at {LOCAL_HOST}:{port} (process "
                f"{found.pid}, another user's): stop it as that user"
            ) from None

    send(signal.SIGTERM)
    if not _wait_stopped(found, port, timeout):
        send(signal.SIGKILL)
        if not _wait_stopped(found, port, 10.0):
            raise CannotStop(f"process {found.pid} still answers at {LOCAL_HOST}:{port}")
    if "ALTLAS_HOME" in found.environment:
        record = ServerRecord.read(Path(found.environment["ALTLAS_HOME"]))
        if record is not None and record.pid == found.pid:
            record.remove()
    return found


def _wait_stopped(process: ServerProcess, port: int, timeout: float) -> bool:
    """Wait until the port no longer answers and the process is gone."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not process.still_running() and probe(port, timeout=0.5) == "free":
            return True
        time.sleep(0.1)
    return False
