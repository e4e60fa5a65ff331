"""`altlas-flows up` and `down`: the whole engine on one machine, on its embedded default.

`up` starts, in order (reusing any that already answers): the Prefect server (SQLite in
`ALTLAS_HOME`), the store's migrations, the REST API on 127.0.0.1:8000, and a warm worker; then
loads the example workflows into a `demo` tenant, runs those that need no parameters through the
API's own path (command bus → deployment → worker), and prints where everything is, a demo API
key and a `curl` line that starts a run. In the foreground Ctrl-C stops what it started, in
reverse order; with `--detach` it returns and `down` stops everything later. A second `up` keeps
the data folder's workflows and runs.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import httpx

from api.auth import Principal
from api.commands import build_bus
from api.commands.runs import StartRun
from api.commands.tenants import CreateApiKey, CreateTenant, IssuedKey
from api.commands.workflows import CreateWorkflow, UpdateWorkflow
from api.deployment_sync import prepare_prefect
from api.dispatcher import Dispatcher
from api.errors import Problem
from api.service import Service
from api.settings import ApiSettings
from api.store.crypto import server_keys
from api.store.migrate import head_revision, upgrade_sync
from api.store.models import RunState
from api.store.runs import get_run
from api.store.tenants import get_tenant
from deployments.cli import EXAMPLES, cmd_down, data_home, own_command, stop_components
from deployments.local import Component, LocalServer, PortTaken, ServerProcess
from interpreter.definition.parameters import prepare_parameters
from interpreter.definition.problems import ParameterError
from interpreter.local_server import use_local_server_if_running
from interpreter.settings import PREFECT_DEFAULTS

DEMO_TENANT = "demo"
STARTUP_SECONDS = 120.0
EXAMPLE_RUN_SECONDS = 60.0
SERVICE_RECORD = "service-processes.json"
"""Where `up` records the API and worker processes it started (for `down`)."""


@dataclass
class ServiceProcess:
    """A process of the service that `up` starts (the API, the worker): `altlas-flows <args>`
    in a process group of its own, its output in `<home>/<name>.log`. A `Component`."""

    name: str
    args: list[str]
    home: Path
    env: dict[str, str]
    ready: Callable[[ServiceProcess], bool]
    """Whether it is ready (the API answers; the worker said it runs)."""
    already: Callable[[], str | None] = lambda: None
    """What already runs in its place (None: nothing), e.g. an API answering on the port."""
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def log_file(self) -> Path:
        return self.home / f"{self.name}.log"

    def ensure_running(self, out: TextIO) -> bool:
        found = self.already()
        if found is not None:
            out.write(f"using the {self.name} already running ({found})\n")
            return False
        out.write(f"starting the {self.name} ...\n")
        out.flush()
        command = [sys.executable, "-m", "api.console", *self.args]
        with self.log_file.open("ab") as log:
            self.process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, env=self.env,
                start_new_session=True,
            )  # fmt: skip
        deadline = time.monotonic() + STARTUP_SECONDS
        while not self.ready(self):
            if self.process.poll() is not None:
                raise RuntimeError(f"the {self.name} exited; see {self.log_file}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the {self.name} did not start; see {self.log_file}")
            time.sleep(0.2)
        return True

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            _stop_group(self.process.pid)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=5)
        self.process = None

    def log_says(self, text: str) -> bool:
        try:
            return text in self.log_file.read_text(errors="replace")
        except OSError:
            return False


def _stop_group(pid: int, *, timeout: float = 30.0) -> None:
    """SIGTERM the process group, then SIGKILL it if it is still there after `timeout`."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)


def _api_answering(url: str) -> str | None:
    """Whether the service's API answers at `url` (its `/healthz`)."""
    try:
        answer = httpx.get(f"{url}/healthz", timeout=1.0)
    except httpx.HTTPError:
        return None
    if answer.status_code == 200 and answer.json() == {"status": "ok"}:
        return f"at {url}"
    return None


def operator_key(home: Path) -> str:
    """`ALTLAS_ADMIN_KEY`, else the key in `<home>/admin.key` (created mode 0600 if absent)."""
    configured = os.environ.get("ALTLAS_ADMIN_KEY", "").strip()
    if configured:
        return configured
    path = home / "admin.key"
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    key = "altlas-operator-" + secrets.token_urlsafe(32)
    with os.fdopen(descriptor, "w") as file:
        file.write(key + "\n")
    return key


def cmd_up(args: argparse.Namespace, out: TextIO = sys.stdout) -> int:
    """Start the engine on this machine (see the module docstring)."""
    home = data_home()
    home.mkdir(parents=True, exist_ok=True)
    settings = ApiSettings(home=home, api_port=args.api_port)
    server = LocalServer(home=home, port=args.port)
    started: list[Component] = []
    try:
        if server.ensure_running(out):
            started.append(server)
        os.environ["PREFECT_API_URL"] = server.api_url
        use_local_server_if_running()  # this process's Prefect client: that server
        upgrade_sync(settings.database_url_resolved())
        out.write(f"the service's database is at revision {head_revision()}\n")
        server_keys(settings)  # create the secret key once, before two processes race for it
        env = {
            **os.environ,
            **{k: os.environ.get(k, v) for k, v in PREFECT_DEFAULTS.items()},
            "ALTLAS_HOME": str(home),
            "ALTLAS_API_PORT": str(args.api_port),
            "ALTLAS_ADMIN_KEY": operator_key(home),
            "PREFECT_API_URL": server.api_url,
        }
        api_url = settings.public_url_resolved()
        services: list[ServiceProcess] = [
            ServiceProcess(
                "api", ["api"], home, env,
                ready=lambda _: _api_answering(api_url) is not None,
                already=lambda: _api_answering(api_url),
            ),
            ServiceProcess(
                "worker", ["worker"], home, env,
                ready=lambda process: process.log_says("runs work pool"),
                already=lambda: _live_recorded(home, "worker"),
            ),
        ]  # fmt: skip
        for process in services:
            if process.ensure_running(out):
                started.append(process)
        _record(home, [p for p in services if p.process is not None])
        demo_key = asyncio.run(_load_demo(settings, out))
    except PortTaken as exc:
        sys.stderr.write(
            f"altlas-flows up: {exc}; choose another port: {own_command()} up --port N\n"
        )
        _stop_started(home, started)
        return 1
    except (RuntimeError, Problem) as exc:
        sys.stderr.write(f"altlas-flows up: {exc}\n")
        _stop_started(home, started)
        return 1
    except BaseException:  # anything else (Ctrl-C while starting): leave nothing behind
        _stop_started(home, started)
        raise
    command = own_command()
    out.write(
        "\nALT_LAS Workflow Engine is up.\n"
        f"  REST API:     {api_url}/v1  (docs: {api_url}/docs)\n"
        f"  Prefect UI:   {server.ui_url}\n"
        f"  Data folder:  {home}\n"
        f"  Demo tenant:  {DEMO_TENANT}, API key (shown once): {demo_key}\n"
        f"  Operator key: in {home / 'admin.key'} (or ALTLAS_ADMIN_KEY)\n"
        "  Start a run:\n"
        f"    curl -s -X POST {api_url}/v1/workflows/chain/runs \\\n"
        f"      -H 'Authorization: Bearer {demo_key}' -H 'Content-Type: application/json' \\\n"
        '      -d \'{"parameters": {"name": "Ada"}}\'\n'
    )
    if args.detach or not started:
        out.write(f"It keeps running; stop it with: {command} down\n")
        return 0
    out.write("Press Ctrl-C to stop.\n")
    out.flush()
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        while all(component.alive() for component in started):
            time.sleep(0.5)
        out.write("a part of the engine stopped; stopping the rest\n")
    except KeyboardInterrupt:
        out.write("stopping ...\n")
    finally:
        _stop_started(home, started)
    return 0


def _stop_started(home: Path, started: Sequence[Component]) -> None:
    """Stop what this `up` started, and forget the processes it recorded."""
    stop_components(started)
    pids = {c.process.pid for c in started if isinstance(c, ServiceProcess) and c.process}
    _forget(home, pids)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _recorded(home: Path) -> list[dict[str, Any]]:
    try:
        rows = json.loads((home / SERVICE_RECORD).read_text())
    except (OSError, ValueError):
        return []
    return [row for row in rows if isinstance(row, dict)]


def _live_recorded(home: Path, name: str) -> str | None:
    """A process named `name` an earlier `up` of this data folder started, still running."""
    for row in _recorded(home):
        found = ServerProcess.of(int(row.get("pid", 0)))
        if row.get("name") == name and found and found.start_ticks == row.get("start_ticks"):
            return f"pid {found.pid}"
    return None


def _forget(home: Path, pids: set[int]) -> None:
    rows = [row for row in _recorded(home) if row.get("pid") not in pids]
    (home / SERVICE_RECORD).write_text(json.dumps(rows) + "\n")


def _record(home: Path, processes: Sequence[ServiceProcess]) -> None:
    """Remember the processes `up` started, with their start times, for `down` (beside those
    an earlier `up` started and this one reused)."""
    rows = _recorded(home)
    for process in processes:
        assert process.process is not None
        found = ServerProcess.of(process.process.pid)
        rows.append(
            {
                "name": process.name,
                "pid": process.process.pid,
                "start_ticks": found.start_ticks if found else 0,
            }
        )
    (home / SERVICE_RECORD).write_text(json.dumps(rows) + "\n")


def cmd_down_all(args: argparse.Namespace, out: TextIO = sys.stdout) -> int:
    """Stop the worker and the API `up` recorded (checking each is still that process), then
    the Prefect server answering on the port."""
    home = data_home()
    record = home / SERVICE_RECORD
    for row in reversed(_recorded(home)):
        found = ServerProcess.of(int(row["pid"]))
        if found is None or found.start_ticks != row.get("start_ticks"):
            out.write(f"the {row['name']} (pid {row['pid']}) is no longer running\n")
            continue
        _stop_group(found.pid)
        out.write(f"stopped the {row['name']} (pid {found.pid})\n")
    record.unlink(missing_ok=True)
    return cmd_down(args, out)


async def _load_demo(settings: ApiSettings, out: TextIO) -> str:
    """The `demo` tenant with the examples as stored workflows; a new key for it; one run of
    each example that needs no parameters, through the API's own path."""
    service = Service.create(settings)
    bus = build_bus(service)
    operator = Principal.for_operator()
    demo = Principal.acting_for(DEMO_TENANT)
    try:
        await prepare_prefect(service)
        async with service.database.session() as session:
            exists = await get_tenant(session, tenant_id=DEMO_TENANT) is not None
        if exists:
            issued: IssuedKey = await bus.dispatch(CreateApiKey(for_tenant=DEMO_TENANT), operator)
        else:
            issued = await bus.dispatch(CreateTenant(new_tenant_id=DEMO_TENANT), operator)
        accepted: list[str] = []
        service.run_accepted = accepted.append
        for path in sorted(EXAMPLES.glob("*.json")):
            definition = json.loads(path.read_text())
            try:
                await bus.dispatch(
                    CreateWorkflow(tenant_id=DEMO_TENANT, definition=definition), demo
                )
            except Problem as problem:
                if problem.status != 409:
                    raise
                update = UpdateWorkflow(
                    tenant_id=DEMO_TENANT, workflow_id=definition["id"], definition=definition
                )
                await bus.dispatch(update, demo)
            try:
                prepare_parameters(definition.get("parameters"), {})
            except ParameterError:
                continue  # needs parameters: the curl line shows how to give them
            await bus.dispatch(StartRun(tenant_id=DEMO_TENANT, workflow_id=definition["id"]), demo)
        dispatcher = Dispatcher(service)
        for run_id in accepted:
            await dispatcher.dispatch(run_id)
        await _report_runs(service, accepted, out)
        return issued.api_key
    finally:
        await service.close()


async def _report_runs(service: Service, run_ids: list[str], out: TextIO) -> None:
    """Wait (a while) for the example runs and say how each ended."""
    deadline = time.monotonic() + EXAMPLE_RUN_SECONDS
    states: dict[str, str] = {}
    while True:
        async with service.database.session() as session:
            for run_id in run_ids:
                run = await get_run(session, tenant_id=DEMO_TENANT, run_id=run_id)
                if run is not None:
                    states[run_id] = f"{run.workflow_id:<16} {run.state.value}"
                    if run.state.is_finished:
                        states[run_id] += f" (run {run.id})"
        finished = all(
            s.split()[1] in {state.value for state in RunState.FINISHED} for s in states.values()
        )
        if finished or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.5)
    for line in states.values():
        out.write(f"  example {line}\n")


__all__ = ["cmd_down_all", "cmd_up", "operator_key"]
