"""(f) Webhooks: how fast signed deliveries are accepted, and how fast a backlog of them runs.

Self-contained, on the Prefect server of `bench.server`: a fresh PostgreSQL store (migrated), the
API served as an operator would serve it, `uvicorn --factory api.main:create_app --workers N`
(`API_PROCESSES` processes; with `--loop asyncio --http h11`, and a second server with `--loop
uvloop --http httptools` when those packages are importable, from the venv or from
`ALTLAS_BENCH_HOOKS_UVLOOP_PATH`, a folder made by `pip install --target DIR uvloop
httptools`), and the service's warm worker (`altlas-flows worker`'s code, counted: a process
of its own). A tenant, its signing secret and one workflow — the 3-node `core.transform` chain
of `bench/latency.py` taking `n` — with two webhook triggers: `signed` (`hmac-sha256`) and
`github` (`github`), each with `dedupe_key` on its delivery-id header and `n` mapped from the
payload. Every delivery is signed, verified, deduplicated by a delivery id of its own and
committed (`accepted`) before its 202.

1. **Acceptance** (`REQUESTS` deliveries per cell, at concurrency 1, 8 and 32, both schemes,
   in `ROUNDS` alternating rounds): deliveries/s and p50/p95, beside Prefect's own rate of
   creating flow runs from a deployment — the same HTTP client posting the dispatcher's body to
   `POST /deployments/{id}/create_flow_run` at the same concurrency (a deployment in a pool of
   its own, runs scheduled a day ahead so that nothing runs them). The dispatcher is held back
   (it starts only when a gate file appears) and the worker is not running: acceptance never
   waits for Prefect, and this measures acceptance alone. The client is this process: a
   minimal HTTP/1.1 client over asyncio streams with one keep-alive connection per concurrent
   caller, so that its own CPU stays small (it is printed). **Target: >= 300 accepted/s on 2
   cores, p50 <= 10 ms.**
2. **Sustained**: `BACKLOG` deliveries accepted first (dispatcher held back), then the gate
   opens and the worker starts: completed runs per second over `WINDOW` seconds, then until
   all are done; every accepted run must reach `completed` exactly once (the store's state and
   node rows, one flow run per run in Prefect, each claimed once by the worker). With the CPU
   per run of the Prefect server, the worker, the API (its dispatcher) and PostgreSQL, and the
   Prefect API requests per run (counted in the worker and in the API processes). **Target:
   >= 10 completed/s on 2 cores.**
3. **Acceptance with the dispatcher in the same process**: the same cells again (a third of
   the requests), the dispatcher creating flow runs in the API processes and the worker
   running them meanwhile.

Phases 2 and 3 serve the API one way only: with uvloop and httptools when they are importable.

Counts: `ALTLAS_BENCH_HOOKS_REQUESTS` (per cell, 600), `ALTLAS_BENCH_HOOKS_BACKLOG` (1000),
`ALTLAS_BENCH_HOOKS_WINDOW` (60 s), `ALTLAS_BENCH_HOOKS_API_PROCESSES` (2),
`ALTLAS_BENCH_HOOKS_WORKER_CONCURRENCY` (8), `ALTLAS_BENCH_HOOKS_PHASES` (`accept,sustained,busy`).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import importlib.util
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from bench.processes import answers, start_process, stop_process, wait_until

if TYPE_CHECKING:
    from fastapi import FastAPI

    from deployments.runner import WarmRunner

REQUESTS = int(os.environ.get("ALTLAS_BENCH_HOOKS_REQUESTS", "600"))
BACKLOG = int(os.environ.get("ALTLAS_BENCH_HOOKS_BACKLOG", "1000"))
WINDOW_SECONDS = float(os.environ.get("ALTLAS_BENCH_HOOKS_WINDOW", "60"))
API_PROCESSES = int(os.environ.get("ALTLAS_BENCH_HOOKS_API_PROCESSES", "2"))
WORKER_CONCURRENCY = int(os.environ.get("ALTLAS_BENCH_HOOKS_WORKER_CONCURRENCY", "8"))
PHASES = os.environ.get("ALTLAS_BENCH_HOOKS_PHASES", "accept,sustained,busy").split(",")
UVLOOP_PATH = os.environ.get("ALTLAS_BENCH_HOOKS_UVLOOP_PATH", "")
CONCURRENCY = (1, 8, 32)
REQUEST_TIMEOUT_SECONDS = 30.0
"""A request not answered by then counts as failed (`TimeoutError`); its connection is closed."""
ROUNDS = 3
WARMUP = 60
DRAIN_TIMEOUT_SECONDS = 600.0
WORKFLOW_ID = "bench-hooks"
SECRET_NAME = "hook"
SECRET_VALUE = "whsec-bench-0123456789abcdef"
SCHEMES = ("signed", "github")
"""The workflow's two webhook triggers (trigger id = the scheme's short name here)."""


def definition() -> dict[str, Any]:
    """The 3-node chain of `bench/latency.py`, taking `n`, with two signed webhook triggers."""
    from bench.latency import definition as latency_definition

    chain = latency_definition()
    chain["nodes"][0]["input"] = {"value": "{{ params.n }}"}
    return {
        **chain,
        "id": WORKFLOW_ID,
        "name": "Webhook bench",
        "description": "three transforms in a row, started by signed webhooks (bench/hooks.py)",
        "parameters": {
            "type": "object",
            "properties": {"n": {"type": "integer", "default": 0}},
            "additionalProperties": False,
        },
        "triggers": [
            {
                "id": "signed",
                "type": "webhook",
                "verify": {"scheme": "hmac-sha256", "secret": SECRET_NAME},
                "dedupe_key": "{{ trigger.headers['x-delivery-id'] }}",
                "parameters": {"n": "{{ trigger.payload.n }}"},
            },
            {
                "id": "github",
                "type": "webhook",
                "verify": {"scheme": "github", "secret": SECRET_NAME},
                "dedupe_key": "{{ trigger.headers['x-github-delivery'] }}",
                "parameters": {"n": "{{ trigger.payload.n }}"},
            },
        ],
    }


def delivery(scheme: str, n: int, secret: str = SECRET_VALUE) -> tuple[bytes, dict[str, str]]:
    """A delivery's body and headers, signed for `scheme`, with a delivery id of its own."""
    body = json.dumps(
        {"action": "opened", "n": n, "repository": {"full_name": "acme/shop"}, "sender": "bench"}
    ).encode()
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    delivery_id = uuid.uuid4().hex
    headers = {"Content-Type": "application/json"}
    if scheme == "github":
        headers |= {
            "X-Hub-Signature-256": f"sha256={digest}",
            "X-GitHub-Delivery": delivery_id,
            "X-GitHub-Event": "pull_request",
        }
    else:
        headers |= {"X-Signature": digest, "X-Delivery-Id": delivery_id}
    return body, headers


# --- a minimal HTTP/1.1 client ---------------------------------------------------------------


class HttpConnection:
    """One keep-alive HTTP/1.1 connection, one request at a time: a few lines of asyncio,
    so that the load generator's CPU per request is small next to the server's."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.prefix = parts.path.rstrip("/")
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def request(
        self, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None
    ) -> tuple[int, bytes]:
        if self._writer is None or self._writer.is_closing():
            self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
        reader, writer = self._reader, self._writer
        assert reader is not None
        lines = [
            f"{method} {self.prefix}{path} HTTP/1.1",
            f"Host: {self.host}:{self.port}",
            f"Content-Length: {len(body)}",
            *(f"{name}: {value}" for name, value in (headers or {}).items()),
        ]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
        status = int((await reader.readline()).split(b" ", 2)[1])
        length, chunked, close = 0, False, False
        while (line := await reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            name, value = name.strip().lower(), value.strip().lower()
            if name == "content-length":
                length = int(value)
            elif name == "transfer-encoding":
                chunked = "chunked" in value
            elif name == "connection":
                close = value == "close"
        if chunked:
            parts = []
            while size := int((await reader.readline()).split(b";")[0], 16):
                parts.append(await reader.readexactly(size))
                await reader.readline()
            await reader.readline()
            answer = b"".join(parts)
        else:
            answer = await reader.readexactly(length)
        if close:
            await self.close()
        return status, answer

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(OSError):
                await self._writer.wait_closed()
            self._writer = None


@dataclass
class Cell:
    """What one kind of request did at one concurrency (possibly over several rounds)."""

    latencies: list[float] = field(default_factory=list)
    wall: float = 0.0
    statuses: Counter[int] = field(default_factory=Counter)
    client_cpu: float = 0.0
    server_cpu: float = 0.0
    """CPU seconds the answering side used meanwhile (the API's processes, or Prefect's)."""
    first_failure: str | None = None

    def add(self, other: Cell) -> None:
        self.latencies += other.latencies
        self.wall += other.wall
        self.statuses += other.statuses
        self.client_cpu += other.client_cpu
        self.server_cpu += other.server_cpu
        self.first_failure = self.first_failure or other.first_failure

    @property
    def rate(self) -> float:
        return len(self.latencies) / self.wall if self.wall else 0.0

    def p(self, q: float) -> float:
        return _p(self.latencies, q)


Request = Callable[[int], tuple[str, str, bytes, dict[str, str]]]
"""Makes request number i: method, path, body, headers."""


async def burst(
    url: str, make: Request, *, concurrency: int, count: int, ok: frozenset[int], start: int = 0
) -> Cell:
    """`count` requests made by `make`, `concurrency` at a time over as many connections."""
    cell = Cell()
    numbers = iter(range(start, start + count))
    connections = [HttpConnection(url) for _ in range(concurrency)]

    async def caller(connection: HttpConnection) -> None:
        for number in numbers:
            method, path, body, headers = make(number)
            started = time.perf_counter()
            try:
                async with asyncio.timeout(REQUEST_TIMEOUT_SECONDS):
                    status, answer = await connection.request(method, path, body, headers)
            except (OSError, asyncio.IncompleteReadError, ValueError, IndexError) as exc:
                await connection.close()
                cell.statuses[0] += 1
                cell.first_failure = cell.first_failure or f"{type(exc).__name__}: {exc}"
                continue
            elapsed = time.perf_counter() - started
            cell.statuses[status] += 1
            if status in ok:
                cell.latencies.append(elapsed)
            elif cell.first_failure is None:
                cell.first_failure = f"{status} {answer[:300]!r}"

    cpu = resource.getrusage(resource.RUSAGE_SELF)
    started = time.perf_counter()
    try:
        await asyncio.gather(*(caller(connection) for connection in connections))
    finally:
        cell.wall = time.perf_counter() - started
        after = resource.getrusage(resource.RUSAGE_SELF)
        cell.client_cpu = (after.ru_utime + after.ru_stime) - (cpu.ru_utime + cpu.ru_stime)
        for connection in connections:
            await connection.close()
    return cell


# --- the service ---------------------------------------------------------------------------------


@dataclass
class ApiServer:
    """One `uvicorn --factory` server of the API (its processes share a process group)."""

    label: str
    url: str
    process: subprocess.Popen[bytes]

    @property
    def group(self) -> int:
        return self.process.pid


@dataclass
class Service:
    """What the benchmark started: store, API servers, worker, and what it provisioned."""

    database_url: str
    home: Path
    pool: str
    admin_key: str
    env: dict[str, str]
    servers: list[ApiServer] = field(default_factory=list)
    worker: subprocess.Popen[bytes] | None = None
    tenant: str = ""
    key: str = ""

    @property
    def gate(self) -> Path:
        """The dispatchers wait for this file (`ALTLAS_BENCH_HOOKS_GATE`)."""
        return self.home / "dispatch-gate"

    @property
    def records(self) -> Path:
        return self.home / "records"

    def hook_path(self, trigger: str) -> str:
        return f"/v1/hooks/{self.tenant}/{WORKFLOW_ID}/{trigger}"


def server_variants() -> list[tuple[str, list[str], str]]:
    """The ways the API is served: label, uvicorn options, extra PYTHONPATH."""
    variants = [("h11 + asyncio", ["--loop", "asyncio", "--http", "h11"], "")]
    have = all(importlib.util.find_spec(name) for name in ("uvloop", "httptools"))
    extra = UVLOOP_PATH if not have and UVLOOP_PATH else ""
    if have or (extra and all((Path(extra) / name).exists() for name in ("uvloop", "httptools"))):
        variants.append(("httptools + uvloop", ["--loop", "uvloop", "--http", "httptools"], extra))
    return variants


@contextlib.contextmanager
def running_service(
    *, processes: int = API_PROCESSES, variants: list[tuple[str, list[str], str]] | None = None,
    gated: bool = True,
) -> Iterator[Service]:  # fmt: skip
    """A fresh store and the API (one server per variant), dispatchers held back when `gated`;
    all stopped, and the store dropped, at the end. The worker is started by `start_worker`."""
    from api.store.crypto import generate_secret_key
    from api.store.migrate import upgrade_sync
    from bench.server import _free_port, drop_database, fresh_postgres_database

    database_url = fresh_postgres_database()
    if database_url is None:
        raise RuntimeError("bench/hooks.py needs PostgreSQL (ALTLAS_BENCH_POSTGRES_DSN)")
    home = Path(tempfile.mkdtemp(prefix="altlas-bench-hooks-"))
    service = Service(
        database_url=database_url,
        home=home,
        pool=f"bench-hooks-{uuid.uuid4().hex[:6]}",
        admin_key=f"operator-{uuid.uuid4().hex}",
        env={},
    )
    service.records.mkdir()
    service.env = {
        **os.environ,
        "ALTLAS_HOME": str(home),
        "ALTLAS_DATABASE_URL": database_url,
        "ALTLAS_SECRET_KEY": generate_secret_key(),
        "ALTLAS_ADMIN_KEY": service.admin_key,
        "ALTLAS_WORKER_POOL": service.pool,
        "ALTLAS_WORKER_CONCURRENCY": str(WORKER_CONCURRENCY),
        "ALTLAS_BENCH_HOOKS_RECORDS": str(service.records),
    }
    if gated:
        service.env["ALTLAS_BENCH_HOOKS_GATE"] = str(service.gate)
    try:
        upgrade_sync(database_url)
        for label, options, extra in variants or server_variants()[:1]:
            port = _free_port()
            env = dict(service.env)
            if extra:
                env["PYTHONPATH"] = os.pathsep.join(p for p in (extra, env.get("PYTHONPATH")) if p)
            command = [
                sys.executable, "-m", "uvicorn", "--factory", "bench.hooks:create_bench_app",
                "--host", "127.0.0.1", "--port", str(port), "--workers", str(processes),
                "--no-access-log", *options,
            ]  # fmt: skip
            log = home / f"api-{port}.log"
            process = start_process(command, env, log)
            server = ApiServer(label, f"http://127.0.0.1:{port}", process)
            service.servers.append(server)
            ready = f"{server.url}/readyz"
            wait_until(partial(answers, ready), 180, f"the API did not start (log {log})")
        # Every process has reconciled the deployments at its start (one that starts after a
        # workflow was stored through another process would otherwise delete its deployment).
        started = partial(_count_started, service.records, processes * len(service.servers))
        wait_until(started, 180, f"not every API process started (logs in {home})")
        yield service
    finally:
        stop_worker(service)
        for server in service.servers:
            stop_process(server.process)
        drop_database(database_url)


def _count_started(records: Path, wanted: int) -> bool:
    return len(list(records.glob("started-*"))) >= wanted


def start_worker(service: Service) -> None:
    """The service's worker, counted (`serve_worker`); returns once it polls its pool."""
    ready = service.records / "worker-ready"
    command = [sys.executable, "-m", "bench.hooks", "worker", str(service.records)]
    service.worker = start_process(command, service.env, service.home / "worker.log")
    wait_until(ready.exists, 180, f"the worker did not start (log {service.home / 'worker.log'})")


def stop_worker(service: Service) -> None:
    if service.worker is not None:
        stop_process(service.worker)
        service.worker = None


async def provision(service: Service) -> None:
    """A tenant with its key and signing secret, and the workflow (its deployment too)."""
    import httpx

    async with httpx.AsyncClient(base_url=service.servers[0].url, timeout=60) as client:
        service.tenant = f"bench-{uuid.uuid4().hex[:6]}"
        admin = {"Authorization": f"Bearer {service.admin_key}"}
        created = await client.post("/v1/tenants", json={"id": service.tenant}, headers=admin)
        created.raise_for_status()
        service.key = created.json()["api_key"]
        auth = {"Authorization": f"Bearer {service.key}"}
        put = await client.put(
            f"/v1/secrets/{SECRET_NAME}", json={"value": SECRET_VALUE}, headers=auth
        )
        put.raise_for_status()
        stored = await client.post("/v1/workflows", json=definition(), headers=auth)
        stored.raise_for_status()


async def store_sql(service: Service, statement: str, *args: Any) -> list[Any]:
    """One statement on the store, straight through asyncpg (the benchmark's own reads)."""
    import asyncpg

    url = service.database_url.replace("postgresql+asyncpg://", "postgresql://")
    connection = await asyncpg.connect(url)
    try:
        return list(await connection.fetch(statement, *args))
    finally:
        await connection.close()


# --- the API and the worker, as the benchmark runs them ------------------------------------------


class RequestCounter:
    """Counts this process's HTTP requests to Prefect by method and path (ids made `{id}`),
    and by who sent them: `who(client)` names the sender."""

    def __init__(self, who: Callable[[Any], str]) -> None:
        import re

        self.counts: Counter[str] = Counter()
        self._who = who
        self._uuid = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")

    def install(self) -> None:
        import httpx

        original = httpx.AsyncClient.send
        counter = self

        async def send(client: httpx.AsyncClient, request: httpx.Request, **kw: Any) -> Any:
            path = counter._uuid.sub("{id}", request.url.path.removeprefix("/api"))
            counter.counts[f"{counter._who(client)} {request.method} {path}"] += 1
            return await original(client, request, **kw)

        httpx.AsyncClient.send = send  # type: ignore[method-assign,assignment]


def create_bench_app() -> FastAPI:
    """`api.main.create_app()` for `uvicorn --factory`, with the dispatcher held back until
    the file `ALTLAS_BENCH_HOOKS_GATE` exists (when set), and the process's requests to
    Prefect counted (written to `ALTLAS_BENCH_HOOKS_RECORDS/api-<pid>.json` at exit)."""
    from api import main
    from api.dispatcher import Dispatcher

    gate = os.environ.get("ALTLAS_BENCH_HOOKS_GATE")
    records = os.environ.get("ALTLAS_BENCH_HOOKS_RECORDS")
    dispatched: list[str] = []

    class BenchDispatcher(Dispatcher):
        async def run_forever(self) -> None:
            # A file is the gate: it opens the dispatchers of every API process at once.
            while gate and not os.path.exists(gate):  # noqa: ASYNC110, ASYNC240
                await asyncio.sleep(0.05)
            await super().run_forever()

        async def dispatch(self, run_id: str) -> bool:
            done = await super().dispatch(run_id)
            if done:
                dispatched.append(run_id)
            return done

    setattr(main, "Dispatcher", BenchDispatcher)  # noqa: B010 (create_app looks it up there)
    counter = RequestCounter(lambda client: "api")
    counter.install()
    app = main.create_app()
    inner = app.router.lifespan_context

    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[Any]:
        # uvicorn's worker processes end without running `atexit` hooks: write at shutdown.
        async with inner(app) as state:
            if records:  # started: the store reconciled with Prefect's deployments
                (Path(records) / f"started-{os.getpid()}").touch()
            yield state
        if records:
            found = {"requests": dict(counter.counts), "dispatched": len(dispatched)}
            (Path(records) / f"api-{os.getpid()}.json").write_text(json.dumps(found))

    app.router.lifespan_context = lifespan
    return app


def serve_worker(records: Path) -> int:
    """The service's worker (`altlas-flows worker`), recording each run's timeline in the
    runner, when the recorder committed each run's states, and the requests to Prefect by
    sender (`runner`: the runner's own client; `engine`: the runs'); written to
    `records/worker.json` when it stops (SIGTERM)."""
    from api.settings import get_api_settings
    from api.store.ports import StoreRecorder
    from api.worker import run_service_worker
    from deployments.runner import WorkerSettings
    from interpreter.run.services import RunChange

    runners: list[WarmRunner] = []
    stored: dict[str, dict[str, float]] = {}
    run_changed = StoreRecorder.run_changed

    async def timed_run_changed(recorder: StoreRecorder, tenant: str, change: RunChange) -> None:
        await run_changed(recorder, tenant, change)
        stored.setdefault(change.run_id, {})[change.phase.value] = time.time()

    StoreRecorder.run_changed = timed_run_changed  # type: ignore[method-assign,assignment]
    marks = install_marks()

    def who(client: Any) -> str:
        mine = runners and getattr(runners[0]._client, "_client", None) is client
        return "runner" if mine else "engine"

    counter = RequestCounter(who)
    counter.install()

    def ready(runner: WarmRunner) -> None:
        runners.append(runner)
        (records / "worker-ready").touch()

    code = run_service_worker(get_api_settings(), WorkerSettings(), ready=ready)
    runner = runners[0] if runners else None
    found = {
        "timelines": {
            str(t.flow_run_id): {
                "offered": t.offered,
                "read": t.read,
                "claimed": t.claimed,
                "started": t.started,
                "finished": t.finished,
                "state": t.state,
            }
            for t in (runner.timelines if runner else [])
        },
        "claimed": [str(i) for i in runner.stats.claimed] if runner else [],
        "lost": runner.stats.lost if runner else 0,
        "stored": stored,
        "marks": marks,
        "requests": dict(counter.counts),
    }
    (records / "worker.json").write_text(json.dumps(found))
    return code


ENGINE_MARKS = (
    "engine: started",
    "engine: Running proposed",
    "engine: Running accepted",
    "engine: run context set up",
    "flow: started",
    "flow: tenant settings read",
    "flow: run's inputs read",
    "flow: nodes done",
    "flow: history written",
    "engine: Completed proposed",
    "engine: Completed accepted",
)
"""The points of a run in the worker that `install_marks` records, in order."""


def install_marks() -> dict[str, dict[str, float]]:
    """Record when each run passes the points of `ENGINE_MARKS` (`time.time()`, by flow run
    id), by wrapping Prefect's engine steps and the store ports the flow calls."""
    from prefect.context import FlowRunContext
    from prefect.flow_engine import AsyncFlowRunEngine

    from api.store.ports import StoreInputs, StorePolicies
    from interpreter.run.execution import Execution

    marks: dict[str, dict[str, float]] = {}

    def mark(label: str, flow_run_id: Any = None) -> None:
        if flow_run_id is None:
            context = FlowRunContext.get()
            if context is None or context.flow_run is None:
                return
            flow_run_id = context.flow_run.id
        marks.setdefault(str(flow_run_id), {}).setdefault(label, time.time())

    def engine_id(args: tuple[Any, ...]) -> Any:
        flow_run = getattr(args[0], "flow_run", None)
        return getattr(flow_run, "id", "?")

    def around(owner: Any, name: str, before: str | None, after: str | None, engine: bool) -> None:
        original = getattr(owner, name)

        async def wrapped(*args: Any, **kwargs: Any) -> Any:
            key = engine_id(args) if engine else None
            if before:
                mark(before, key)
            try:
                return await original(*args, **kwargs)
            finally:
                if after:
                    mark(after, key)

        setattr(owner, name, wrapped)

    def on_call(owner: Any, name: str, label: str) -> None:  # an async context manager
        original = getattr(owner, name)

        def wrapped(*args: Any, **kwargs: Any) -> Any:
            mark(label, engine_id(args))
            return original(*args, **kwargs)

        setattr(owner, name, wrapped)

    on_call(AsyncFlowRunEngine, "initialize_run", ENGINE_MARKS[0])
    around(AsyncFlowRunEngine, "begin_run", ENGINE_MARKS[1], ENGINE_MARKS[2], True)
    on_call(AsyncFlowRunEngine, "setup_run_context", ENGINE_MARKS[3])
    around(StorePolicies, "policy", ENGINE_MARKS[4], ENGINE_MARKS[5], False)
    around(StoreInputs, "open", None, ENGINE_MARKS[6], False)
    around(Execution, "history_written", ENGINE_MARKS[7], ENGINE_MARKS[8], False)
    around(AsyncFlowRunEngine, "handle_success", ENGINE_MARKS[9], ENGINE_MARKS[10], True)
    return marks


def read_records(service: Service) -> tuple[dict[str, Any], dict[str, Any]]:
    """What the worker and the API processes wrote at exit (after they stopped)."""
    worker_file = service.records / "worker.json"
    worker = json.loads(worker_file.read_text()) if worker_file.exists() else {}
    api: dict[str, Any] = {"requests": Counter(), "dispatched": 0}
    for path in service.records.glob("api-*.json"):
        found = json.loads(path.read_text())
        api["requests"].update(found["requests"])
        api["dispatched"] += found["dispatched"]
    return worker, api


# --- CPU ----------------------------------------------------------------------------------------


def group_cpu(group: int | None) -> float:
    """CPU seconds used so far by a process group (with its reaped children)."""
    if group is None:
        return 0.0
    ticks = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            text = (entry / "stat").read_text()
        except OSError:
            continue
        fields = text[text.rindex(")") + 2 :].split()
        if int(fields[2]) == group:
            ticks += sum(int(f) for f in fields[11:15])
    return ticks / os.sysconf("SC_CLK_TCK")


def prefect_server_group() -> int | None:
    from prefect.settings import PREFECT_API_URL

    from deployments.local import listening_process

    port = urlsplit(str(PREFECT_API_URL.value())).port
    found = listening_process(port) if port else None
    return found.process_group if found else None


def postgres_group() -> int | None:
    """The PostgreSQL server's process group (its backends are in it), if it runs here."""
    from deployments.local import listening_process

    port = urlsplit(os.environ.get("ALTLAS_BENCH_POSTGRES_DSN", "postgresql://h:5432")).port
    found = listening_process(port or 5432)
    return found.process_group if found else None


class Meter:
    """CPU seconds of several process groups between `start` and `stop`."""

    def __init__(self, groups: dict[str, int | None]) -> None:
        self.groups = groups
        self.before: dict[str, float] = {}
        self.used: dict[str, float] = {}

    def start(self) -> Meter:
        self.before = {name: group_cpu(group) for name, group in self.groups.items()}
        return self

    def stop(self) -> dict[str, float]:
        self.used = {n: group_cpu(g) - self.before[n] for n, g in self.groups.items()}
        return self.used


def load_average() -> float:
    return os.getloadavg()[0]


# --- 1. and 3. acceptance ------------------------------------------------------------------------


@dataclass
class Target:
    """Something to send requests to: its URL, the request maker, what answers count."""

    url: str
    make: Request
    ok: frozenset[int]
    group: int | None


async def prefect_target() -> tuple[Target, Callable[[], Awaitable[None]]]:
    """Prefect's own flow-run creation: a deployment of the workflow in a pool of its own,
    and the body the dispatcher sends for a run (its runs scheduled a day ahead); and a
    clean-up that deletes the deployment with its runs."""
    from prefect import get_client
    from prefect.client.schemas.actions import DeploymentFlowRunCreate
    from prefect.settings import PREFECT_API_URL
    from prefect.states import Scheduled, to_state_create

    from deployments.sync import WorkflowDeployment, ensure_work_pool, sync_workflow
    from interpreter.run.launch import run_tags
    from pieces.triggers.event import trigger_scope

    pool = f"bench-hooks-prefect-{uuid.uuid4().hex[:6]}"
    later = datetime.now(UTC) + timedelta(days=1)
    async with get_client() as client:
        await ensure_work_pool(client, pool)
        spec = WorkflowDeployment("prefect-baseline", WORKFLOW_ID, 1, definition(), True)
        deployment_id = await sync_workflow(client, spec, work_pool=pool)
    trigger = trigger_scope(
        trigger_type="webhook", trigger_id="signed", payload={"n": 1},
        received_at=datetime.now(UTC),
    )  # fmt: skip
    base = DeploymentFlowRunCreate(
        parameters={"parameters": {"n": 1}, "trigger": {**trigger, "body": None}, "run_id": ""},
        state=to_state_create(Scheduled(scheduled_time=later)),
        tags=run_tags(tenant="prefect-baseline", workflow_id=WORKFLOW_ID, version="1"),
        name="Webhook bench",
    ).model_dump(mode="json", exclude_unset=True)
    path = f"/deployments/{deployment_id}/create_flow_run"

    def make(number: int) -> tuple[str, str, bytes, dict[str, str]]:
        run_id = f"run_{uuid.uuid4().hex}"
        body = {**base, "idempotency_key": f"altlas-run:{run_id}"}
        body["parameters"] = {**base["parameters"], "run_id": run_id}
        return "POST", path, json.dumps(body).encode(), {"Content-Type": "application/json"}

    async def clean_up() -> None:
        async with get_client() as client:
            with contextlib.suppress(Exception):
                await client.delete_deployment(deployment_id)

    url = str(PREFECT_API_URL.value())
    return Target(url, make, frozenset({201}), prefect_server_group()), clean_up


def hook_target(service: Service, server: ApiServer, scheme: str) -> Target:
    path = service.hook_path(scheme)

    def make(number: int) -> tuple[str, str, bytes, dict[str, str]]:
        body, headers = delivery(scheme, number)
        return "POST", path, body, headers

    return Target(server.url, make, frozenset({202}), server.group)


async def acceptance(targets: dict[str, Target], *, requests: int) -> dict[tuple[str, int], Cell]:
    """Every target at every concurrency, `requests` each, in `ROUNDS` alternating rounds."""
    cells: dict[tuple[str, int], Cell] = {}
    for target in targets.values():  # warm-up: imports, caches, connections
        await burst(target.url, target.make, concurrency=8, count=WARMUP, ok=target.ok)
    per_round = max(1, requests // ROUNDS)
    for _ in range(ROUNDS):
        for concurrency in CONCURRENCY:
            for name, target in targets.items():
                cpu = group_cpu(target.group)
                cell = await burst(
                    target.url, target.make, concurrency=concurrency, count=per_round,
                    ok=target.ok,
                )  # fmt: skip
                cell.server_cpu = group_cpu(target.group) - cpu
                cells.setdefault((name, concurrency), Cell()).add(cell)
    return cells


def print_acceptance(
    title: str, cells: dict[tuple[str, int], Cell], baseline: str
) -> dict[str, Any]:
    print(f"\n{title}")
    print(
        f"  {'target':<34} {'conc.':>5} {'per s':>7} {'p50':>8} {'p95':>8} "
        f"{'CPU/req':>8} {'client':>7}  vs Prefect"
    )
    figures: dict[str, Any] = {}
    for (name, concurrency), cell in cells.items():
        base = cells.get((baseline, concurrency))
        versus = ""
        if base is not None and name != baseline and base.rate:
            versus = f"{cell.rate / base.rate:.1f}x the rate"
        count = len(cell.latencies) or 1
        print(
            f"  {name:<34} {concurrency:>5} {cell.rate:>7.0f} {cell.p(0.5) * 1000:>6.1f}ms "
            f"{cell.p(0.95) * 1000:>6.1f}ms {cell.server_cpu / count * 1000:>6.2f}ms "
            f"{cell.client_cpu / count * 1000:>5.2f}ms  {versus}"
        )
        failed = {s: n for s, n in cell.statuses.items() if s not in (201, 202)}
        if failed:
            print(f"    failed: {failed}; first: {cell.first_failure}")
        figures[f"{name}@{concurrency}"] = {
            "rate": cell.rate,
            "p50_ms": cell.p(0.5) * 1000,
            "p95_ms": cell.p(0.95) * 1000,
            "server_cpu_ms": cell.server_cpu / count * 1000,
            "client_cpu_ms": cell.client_cpu / count * 1000,
            "failed": failed,
        }
    return figures


# --- 2. sustained --------------------------------------------------------------------------------


async def accept_backlog(service: Service, count: int) -> tuple[list[str], float]:
    """`count` deliveries (alternating schemes, 32 at a time); the run ids and the seconds."""
    run_ids: list[str] = []
    server = service.servers[0]
    connections = [HttpConnection(server.url) for _ in range(32)]
    numbers = iter(range(count))

    async def caller(connection: HttpConnection) -> None:
        for number in numbers:
            scheme = SCHEMES[number % 2]
            body, headers = delivery(scheme, number)
            async with asyncio.timeout(REQUEST_TIMEOUT_SECONDS):
                status, answer = await connection.request(
                    "POST", service.hook_path(scheme), body, headers
                )
            if status != 202:
                raise RuntimeError(f"delivery {number}: {status} {answer[:300]!r}")
            run_ids.append(json.loads(answer)["run_id"])

    started = time.perf_counter()
    await asyncio.gather(*(caller(connection) for connection in connections))
    for connection in connections:
        await connection.close()
    return run_ids, time.perf_counter() - started


async def sustained(service: Service) -> dict[str, Any]:
    """Accept `BACKLOG`, then open the gate and start the worker; follow the store."""
    already = {r["id"] for r in await store_sql(service, "SELECT id FROM runs")}
    run_ids, accept_seconds = await accept_backlog(service, BACKLOG)
    meter = Meter(
        {
            "Prefect server": prefect_server_group(),
            "API (dispatcher)": service.servers[0].group,
            "PostgreSQL (all databases)": postgres_group(),
        }
    )
    start_worker(service)  # started before the gate opens: its start-up is not timed
    worker_group = service.worker.pid if service.worker else None
    meter.groups["worker"] = worker_group
    worker_cpu = group_cpu(worker_group)
    meter.start()
    meter.before["worker"] = worker_cpu
    loads = [load_average()]
    opened = time.time()
    service.gate.touch()
    samples: list[tuple[float, int]] = []
    deadline = time.monotonic() + DRAIN_TIMEOUT_SECONDS
    wanted = set(run_ids)
    while True:
        await asyncio.sleep(1.0)
        rows = await store_sql(
            service, "SELECT count(*) AS n FROM runs WHERE state = 'completed' AND id = ANY($1)",
            list(wanted),
        )  # fmt: skip
        done = rows[0]["n"]
        samples.append((time.time() - opened, done))
        loads.append(load_average())
        if done >= len(wanted) or time.monotonic() > deadline:
            break
    cpu = meter.stop()
    stop_worker(service)
    rows = await store_sql(
        service, "SELECT id, state, finished_at, flow_run_id, (SELECT count(*) FROM node_runs n "
        "WHERE n.run_id = r.id) AS nodes FROM runs r WHERE id = ANY($1)", list(wanted),
    )  # fmt: skip
    finished = sorted(r["finished_at"].timestamp() - opened for r in rows if r["finished_at"])
    states = Counter(r["state"] for r in rows)
    in_window = sum(1 for at in finished if at <= WINDOW_SECONDS)
    prefect = await prefect_runs([r["flow_run_id"] for r in rows if r["flow_run_id"]])
    return {
        "accepted": len(run_ids),
        "accept_seconds": accept_seconds,
        "unknown_rows": len(wanted - {r["id"] for r in rows}),
        "preexisting": len(already),
        "states": dict(states),
        "nodes_ok": sum(1 for r in rows if r["nodes"] == 3),
        "finished": finished,
        "in_window": in_window,
        "samples": samples,
        "cpu": cpu,
        "loads": loads,
        "prefect": prefect,
        "flow_run_ids": [r["flow_run_id"] for r in rows if r["flow_run_id"]],
    }


async def prefect_runs(flow_run_ids: list[str]) -> dict[str, Any]:
    """The Prefect side of the backlog's runs: their state types, and how many flow runs
    carry each run id (one each: no run was dispatched twice)."""
    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    states: Counter[str] = Counter()
    per_run: Counter[str] = Counter()
    async with get_client() as client:
        for start in range(0, len(flow_run_ids), 200):
            chunk = [uuid.UUID(i) for i in flow_run_ids[start : start + 200]]
            runs = await client.read_flow_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=chunk)), limit=200
            )
            for run in runs:
                states[run.state.type.value if run.state else "NONE"] += 1
                per_run[str(run.parameters.get("run_id"))] += 1
    return {"states": dict(states), "duplicates": sum(1 for n in per_run.values() if n > 1)}


def print_sustained(
    found: dict[str, Any], worker: dict[str, Any], api: dict[str, Any]
) -> dict[str, Any]:
    accepted, finished = found["accepted"], found["finished"]
    total = finished[-1] if finished else 0.0
    print(
        f"\n(f) sustained: {accepted} deliveries accepted in {found['accept_seconds']:.1f} s "
        f"({accepted / found['accept_seconds']:.0f}/s), then dispatcher + worker "
        f"(concurrency {WORKER_CONCURRENCY}, {API_PROCESSES} API processes)"
    )
    window = found["in_window"] / WINDOW_SECONDS
    print(
        f"  completed in the first {WINDOW_SECONDS:.0f} s: {found['in_window']} "
        f"({window:.1f}/s); all {len(finished)} in {total:.1f} s "
        f"({len(finished) / total if total else 0:.1f}/s overall)"
    )
    if finished:
        steady = [at for at in finished if 10 <= at <= min(total, 10 + WINDOW_SECONDS)]
        span = min(total, 10 + WINDOW_SECONDS) - 10
        if span > 0:
            print(f"  steady rate (10 s after the gate opened, for {span:.0f} s): "
                  f"{len(steady) / span:.1f}/s")  # fmt: skip
    claimed = worker.get("claimed", [])
    print(
        f"  exactly once: store states {found['states']}, runs with their 3 node rows "
        f"{found['nodes_ok']}/{accepted}; Prefect states {found['prefect']['states']}, run ids "
        f"with more than one flow run {found['prefect']['duplicates']}; the worker claimed "
        f"{len(claimed)} ({len(claimed) - len(set(claimed))} twice), lost {worker.get('lost')}"
    )
    done = max(len(finished), 1)
    print("  CPU per completed run: " + ", ".join(
        f"{name} {seconds / done * 1000:.0f} ms" for name, seconds in found["cpu"].items()
    ) + f" (load average {min(found['loads']):.1f}-{max(found['loads']):.1f})")  # fmt: skip
    by_sender: dict[str, Counter[str]] = {}
    for key, n in worker.get("requests", {}).items():
        who, request = key.split(" ", 1)
        by_sender.setdefault(who, Counter())[request] += n
    for key, n in api["requests"].items():
        by_sender.setdefault("dispatcher", Counter())[key.split(" ", 1)[1]] += n
    requests: dict[str, float] = {}
    for who, counts in by_sender.items():
        per = {request: n / done for request, n in counts.items()}
        requests[who] = sum(per.values())
        detail = ", ".join(f"{r} {n:.2f}" for r, n in sorted(per.items(), key=lambda i: -i[1]))
        print(f"  Prefect API requests per run by the {who}: {sum(per.values()):.1f} ({detail})")
    steps = stage_medians(worker)
    if steps:
        print(
            "  worker, medians per run: "
            + ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in steps.items())
        )
    return {
        "window_rate": window,
        "overall_rate": len(finished) / total if total else 0.0,
        "cpu_ms_per_run": {k: v / done * 1000 for k, v in found["cpu"].items()},
        "requests_per_run": requests,
        "states": found["states"],
    }


def stage_medians(worker: dict[str, Any]) -> dict[str, float]:
    steps: dict[str, list[float]] = {}
    for t in worker.get("timelines", {}).values():
        if t.get("claimed") and t.get("started") and t.get("finished"):
            steps.setdefault("event → claimed", []).append(t["claimed"] - t["offered"])
            steps.setdefault("claimed → thread", []).append(t["started"] - t["claimed"])
            steps.setdefault("thread → run ended", []).append(t["finished"] - t["started"])
    return {k: statistics.median(v) for k, v in steps.items()}


# --- the benchmark ---------------------------------------------------------------------------


def _p(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


async def _acceptance_phase(service: Service, *, label: str, requests: int) -> dict[str, Any]:
    targets: dict[str, Target] = {}
    prefect, clean_up = await prefect_target()
    try:
        for server in service.servers:
            for scheme in SCHEMES:
                targets[f"webhook {scheme}, {server.label}"] = hook_target(service, server, scheme)
        targets["Prefect create_flow_run"] = prefect
        loads = [load_average()]
        cells = await acceptance(targets, requests=requests)
        loads.append(load_average())
    finally:
        await clean_up()
    figures = print_acceptance(
        f"{label}, {requests} per cell, {API_PROCESSES} API processes "
        f"(load average {min(loads):.1f}-{max(loads):.1f})",
        cells,
        "Prefect create_flow_run",
    )
    return figures


def main() -> dict[str, Any]:
    """The phases, each on a service of its own (fresh store, API and worker)."""
    figures: dict[str, Any] = {}
    if "accept" in PHASES:
        print("(f) starting the store and the API ...", flush=True)
        with running_service(variants=server_variants()) as service:
            asyncio.run(provision(service))
            figures["acceptance"] = asyncio.run(
                _acceptance_phase(
                    service,
                    label="(f) webhook acceptance (dispatcher held back, no worker)",
                    requests=REQUESTS,
                )
            )
    if "sustained" in PHASES:
        with running_service(variants=server_variants()[-1:]) as service:
            asyncio.run(provision(service))
            found = asyncio.run(sustained(service))
        worker, api = read_records(service)  # written by the processes as they stopped
        figures["sustained"] = print_sustained(found, worker, api)
    if "busy" in PHASES:
        with running_service(variants=server_variants()[-1:], gated=False) as service:
            asyncio.run(provision(service))
            start_worker(service)
            figures["busy"] = asyncio.run(
                _acceptance_phase(
                    service,
                    label="(f) webhook acceptance with the dispatcher (in the API processes) "
                    "and the worker running",
                    requests=max(ROUNDS, REQUESTS // 3),  # Prefect answers slowly meanwhile
                )
            )
    return figures


if __name__ == "__main__":  # the worker process of `start_worker`
    if sys.argv[1:2] != ["worker"]:
        sys.exit(
            "usage: python -m bench.hooks worker RECORDS (the benchmark: python -m bench hooks)"
        )
    sys.exit(serve_worker(Path(sys.argv[2])))
