"""(e) The REST facade: read latency over HTTP, and startRun → Running / Completed.

Self-contained: on the Prefect server of `bench.server`, it starts the API (`altlas-flows api`,
a subprocess) with its store on a fresh PostgreSQL database, migrated, and the service's warm
worker (a subprocess running `api.worker.run_service_worker`, instrumented, see `serve_worker`)
on a work pool of its own; through the operator key, a tenant with a key and three secrets (so
that the redactor has work); and the 3-node `core.transform` chain of `bench/latency.py`. All is
stopped, and the store's database dropped, at the end. Three processes, as in production: the
API, the worker and the Prefect server; the benchmark is the client.

1. **Reads**: `getRun` and `listRuns?limit=50` with `STORED_RUNS` runs in the store (one real
   run, the others copies of it written to the store directly), p50 and p95 latency and
   requests per second at concurrency 1, 8 and 16 (an `httpx.AsyncClient`, keep-alive), against
   `GET /healthz` (no authentication, no database) at the same concurrency: the difference is
   what authentication, the queries and the serialisation cost. The three endpoints alternate
   in rounds, so a slow phase of the machine affects them alike. A cell whose requests fail
   (before the redactor read with the request's session, the store's connection pool ran dry
   at 16) is reported as failed with its first failure, and not measured again. **Target:
   getRun p50 <= 5 ms at concurrency 1.**
2. **Runs**: `RUNS` runs of the workflow through `startRun`, one after another, each timed from
   the moment the request is sent: when the worker committed the run's `running` and
   `completed` states to the store (what getRun shows from then on), the run's `started_at` /
   `finished_at` (the engine's clock), the first `getRun` (polled every `POLL_SECONDS`) showing
   them, and the flow run's Running / Completed states in Prefect. Baseline: the same workflow
   deployed to a `process` work pool worked by `prefect worker start --pool P --type process`
   (Prefect's defaults: it polls every 10 s and starts a Python process per run),
   `BASELINE_RUNS` runs created with `run_deployment(..., timeout=0)`, timed from the call to
   the flow run's Running / Completed states. **Target: Completed p50 <= 1 s for the API path.**

Where the time of an API run goes comes from the worker's instrumentation: the runner's
timeline of each run (event received, claimed, thread started), the engine's wait for its run
recorder at the end of the run (`Execution.history_written`: the flow returns only once the run's
history is in the store), and the count and duration of the recorder's writes.

`ALTLAS_BENCH_API_PROFILE=1` runs the API with timers around authentication, the queries, the
redactor, the presenters, serialisation and the database driver's calls (`serve_api_timed`), and
prints where each endpoint's time goes. Counts: `ALTLAS_BENCH_API_RUNS` (default 30),
`ALTLAS_BENCH_API_BASELINE_RUNS` (10), `ALTLAS_BENCH_API_REQUESTS` (per cell, 500),
`ALTLAS_BENCH_API_POLL` (seconds between getRun polls, 0.1).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.processes import answers, start_process, stop_process, wait_until

if TYPE_CHECKING:
    import httpx
    from prefect.client.orchestration import PrefectClient

RUNS = int(os.environ.get("ALTLAS_BENCH_API_RUNS", "30"))
BASELINE_RUNS = int(os.environ.get("ALTLAS_BENCH_API_BASELINE_RUNS", "10"))
REQUESTS = int(os.environ.get("ALTLAS_BENCH_API_REQUESTS", "500"))
POLL_SECONDS = float(os.environ.get("ALTLAS_BENCH_API_POLL", "0.1"))
PROFILE = os.environ.get("ALTLAS_BENCH_API_PROFILE", "") not in ("", "0")
"""Run the API timed (`serve_api_timed`) and print where each endpoint's time goes."""
ROUNDS = 5
"""Each read cell is measured in this many rounds of REQUESTS / ROUNDS requests, alternating
with the other endpoints."""
WARMUP_REQUESTS = 50
STORED_RUNS = 200
CONCURRENCY = (1, 8, 16)
PAUSE_SECONDS = 0.5
WORKFLOW_ID = "bench-api"
SECRETS = {"api_token": "s3cr3t-token-value", "db_password": "hunter2-hunter2", "hook": "abc123"}
FINISHED = {"completed", "failed", "timed_out", "cancelled", "crashed"}


def definition() -> dict[str, Any]:
    """The 3-node chain of `bench/latency.py`, under this benchmark's id."""
    from bench.latency import definition as latency_definition

    return {
        **latency_definition(),
        "id": WORKFLOW_ID,
        "name": "API bench",
        "description": "three transforms in a row (bench/api.py)",
    }


# --- the service: API and worker as subprocesses -------------------------------------------------


@dataclass
class Service:
    """The running service, as the benchmark sees it."""

    url: str
    admin_key: str
    database_url: str
    pool: str
    home: Path
    worker_records: Path
    key: str = ""
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}


@contextlib.contextmanager
def running_service() -> Iterator[Service]:
    """The API and the warm worker on a fresh, migrated store; stopped and dropped at the end."""
    from api.store.crypto import generate_secret_key
    from api.store.migrate import upgrade_sync
    from bench.server import _free_port, _fresh_postgres_database

    database_url = _fresh_postgres_database()
    if database_url is None:
        raise RuntimeError("bench/api.py needs PostgreSQL (ALTLAS_BENCH_POSTGRES_DSN)")
    upgrade_sync(database_url)
    home = Path(tempfile.mkdtemp(prefix="altlas-bench-api-"))
    port = _free_port()
    service = Service(
        url=f"http://127.0.0.1:{port}",
        admin_key=f"operator-{uuid.uuid4().hex}",
        database_url=database_url,
        pool=f"bench-api-{uuid.uuid4().hex[:6]}",
        home=home,
        worker_records=home / "worker-records.json",
    )
    env = {
        **os.environ,
        "ALTLAS_HOME": str(home),
        "ALTLAS_DATABASE_URL": database_url,
        "ALTLAS_SECRET_KEY": generate_secret_key(),
        "ALTLAS_ADMIN_KEY": service.admin_key,
        "ALTLAS_API_PORT": str(port),
        "ALTLAS_WORKER_POOL": service.pool,
    }
    try:
        api = [sys.executable, "-m", "bench.api" if PROFILE else "api.console", "api"]
        service.processes.append(start_process(api, env, home / "api.log"))
        wait_until(lambda: answers(f"{service.url}/healthz"), 120, "the API did not start")
        worker = [sys.executable, "-m", "bench.api", "worker", str(service.worker_records)]
        service.processes.append(start_process(worker, env, home / "worker.log"))
        ready = home / "worker-ready"
        wait_until(ready.exists, 120, f"the worker did not start (log: {home / 'worker.log'})")
        yield service
    finally:
        for process in reversed(service.processes):
            stop_process(process, grace=60)
        _drop_database(database_url)


def _drop_database(url: str) -> None:
    import asyncpg

    from bench.server import POSTGRES

    name = url.rsplit("/", 1)[1]

    async def drop() -> None:
        connection = await asyncpg.connect(POSTGRES)
        try:
            await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await connection.close()

    asyncio.run(drop())


async def provision(client: httpx.AsyncClient, service: Service) -> None:
    """A tenant, its key and secrets, and the workflow (its deployment on the worker's pool)."""
    tenant = f"bench-{uuid.uuid4().hex[:6]}"
    admin = {"Authorization": f"Bearer {service.admin_key}"}
    created = await client.post("/v1/tenants", json={"id": tenant}, headers=admin)
    created.raise_for_status()
    service.key = created.json()["api_key"]
    for name, value in SECRETS.items():
        put = await client.put(f"/v1/secrets/{name}", json={"value": value}, headers=service.auth)
        put.raise_for_status()
    stored = await client.post("/v1/workflows", json=definition(), headers=service.auth)
    stored.raise_for_status()


async def fill_store(service: Service, model: dict[str, Any], count: int) -> None:
    """`count` finished runs like `model` (a run as getRun answers it), written to the store
    directly: listing reads rows, not how they got there."""
    from api.store.crypto import key_id_of
    from api.store.database import Database
    from api.store.models import RunState, TriggerType
    from api.store.runs import create_run, update_run_state
    from api.store.tenants import find_api_key

    database = Database(service.database_url)
    started = datetime.fromisoformat(model["started_at"])
    finished = datetime.fromisoformat(model["finished_at"])
    try:
        async with database.session() as session:
            key = await find_api_key(session, key_id=key_id_of(service.key) or "")
            assert key is not None
            for _ in range(count):
                run = await create_run(
                    session,
                    tenant_id=key.tenant_id,
                    workflow_id=model["workflow_id"],
                    version=model["version"],
                    trigger_type=TriggerType(model["trigger"]["type"]),
                    parameters=model["parameters"],
                )
                await update_run_state(
                    session,
                    run_id=run.id,
                    state=RunState.RUNNING,
                    started_at=started,
                    flow_run_id=str(uuid.uuid4()),
                )
                await update_run_state(
                    session,
                    run_id=run.id,
                    state=RunState.COMPLETED,
                    finished_at=finished,
                    output=model["output"],
                )
    finally:
        await database.dispose()


# --- 1. reads --------------------------------------------------------------------------------


@dataclass
class Cell:
    latencies: list[float] = field(default_factory=list)
    wall: float = 0.0
    phases: dict[str, list[float]] = field(default_factory=dict)  # PROFILE: label → calls, s
    errors: int = 0
    failure: str | None = None  # the first failure's status or exception, and its latency

    def add(self, other: Cell) -> None:
        self.latencies += other.latencies
        self.wall += other.wall
        self.errors += other.errors
        self.failure = self.failure or other.failure

    def p(self, q: float) -> float:
        return _p(self.latencies, q)

    @property
    def rps(self) -> float:
        return len(self.latencies) / self.wall


async def _burst(
    client: httpx.AsyncClient, path: str, headers: dict[str, str], concurrency: int, count: int
) -> Cell:
    """`count` GETs of `path`, `concurrency` at a time. After the first failure (an error
    status, a time-out, a dropped connection) no more requests are sent."""
    import httpx

    cell = Cell()
    remaining = count

    async def one_client() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            started = time.perf_counter()
            try:
                response = await client.get(path, headers=headers)
                failure = None if response.status_code == 200 else f"{response.status_code}"
            except httpx.HTTPError as exc:
                failure = type(exc).__name__
            elapsed = time.perf_counter() - started
            if failure is None:
                cell.latencies.append(elapsed)
            else:
                cell.errors += 1
                cell.failure = cell.failure or f"{failure} after {elapsed:.1f} s"
                remaining = 0

    started = time.perf_counter()
    await asyncio.gather(*(one_client() for _ in range(concurrency)))
    cell.wall = time.perf_counter() - started
    return cell


async def reads(service: Service, run_id: str) -> dict[tuple[str, int], Cell]:
    import httpx

    endpoints = {
        "healthz": ("/healthz", {}),
        "getRun": (f"/v1/runs/{run_id}", service.auth),
        "listRuns": ("/v1/runs?limit=50", service.auth),
    }
    cells: dict[tuple[str, int], Cell] = {}
    for concurrency in CONCURRENCY:
        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        async with httpx.AsyncClient(base_url=service.url, limits=limits, timeout=60) as client:
            for name, (path, headers) in endpoints.items():
                warm_up = await _burst(client, path, headers, concurrency, WARMUP_REQUESTS)
                cells[(name, concurrency)] = Cell(errors=warm_up.errors, failure=warm_up.failure)
            for _ in range(ROUNDS):
                for name, (path, headers) in endpoints.items():
                    cell = cells[(name, concurrency)]
                    if cell.failure is not None:
                        continue  # measured once is enough: it fails the same way
                    if PROFILE:
                        await client.get("/_bench/timings")  # forget what came before
                    cell.add(await _burst(client, path, headers, concurrency, REQUESTS // ROUNDS))
                    if PROFILE:
                        timings = (await client.get("/_bench/timings")).json()
                        for label, (calls, seconds) in timings.items():
                            total = cell.phases.setdefault(label, [0, 0.0])
                            total[0] += calls
                            total[1] += seconds
    return cells


# --- 2. runs ---------------------------------------------------------------------------------


@dataclass
class ApiRun:
    """One run through startRun; seconds after the request was sent."""

    run_id: str
    flow_run_id: str
    sent: float
    accepted: float  # the 202 received
    seen: dict[str, float]  # state → first getRun that showed it
    started_at: float  # the run row's started_at (the engine began)
    finished_at: float  # the run row's finished_at (the engine's end, before history is written)
    state: str
    prefect: dict[str, float] = field(default_factory=dict)  # created, RUNNING, COMPLETED


async def api_run(client: httpx.AsyncClient, service: Service) -> ApiRun:
    sent = time.time()
    response = await client.post(f"/v1/workflows/{WORKFLOW_ID}/runs", json={}, headers=service.auth)
    accepted = time.time()
    if response.status_code != 202:
        raise RuntimeError(f"startRun: {response.status_code} {response.text[:300]}")
    run_id = response.json()["id"]
    seen: dict[str, float] = {}
    deadline = time.monotonic() + 120
    while True:
        await asyncio.sleep(POLL_SECONDS)
        run = (await client.get(f"/v1/runs/{run_id}", headers=service.auth)).json()
        seen.setdefault(run["state"], time.time() - sent)
        if run["state"] in FINISHED:
            break
        if time.monotonic() > deadline:
            raise RuntimeError(f"run {run_id} still {run['state']} after 120 s")
    return ApiRun(
        run_id=run_id,
        flow_run_id=run["flow_run_id"],
        sent=sent,
        accepted=accepted - sent,
        seen=seen,
        started_at=datetime.fromisoformat(run["started_at"]).timestamp() - sent,
        finished_at=datetime.fromisoformat(run["finished_at"]).timestamp() - sent,
        state=run["state"],
    )


async def _prefect_times(client: PrefectClient, flow_run_id: str, since: float) -> dict[str, float]:
    """When Prefect created the flow run and when it entered each state (first time), in
    seconds after `since`."""
    from uuid import UUID

    flow_run = await client.read_flow_run(UUID(flow_run_id))
    assert flow_run.created is not None
    times = {"created": flow_run.created.timestamp() - since}
    for state in sorted(await client.read_flow_run_states(UUID(flow_run_id)), key=_at):
        times.setdefault(state.type.value, state.timestamp.timestamp() - since)
    return times


def _at(state: Any) -> datetime:
    stamp: datetime = state.timestamp
    return stamp


async def api_runs(service: Service) -> list[ApiRun]:
    import httpx
    from prefect import get_client

    async with httpx.AsyncClient(base_url=service.url, timeout=30) as client:
        runs = []
        for _ in range(RUNS):
            await asyncio.sleep(PAUSE_SECONDS)
            runs.append(await api_run(client, service))
    async with get_client() as prefect:
        for run in runs:
            run.prefect = await _prefect_times(prefect, run.flow_run_id, run.sent)
    return runs


@dataclass
class BaselineRun:
    """One run through Prefect's process worker; seconds after run_deployment was called."""

    created: float
    running: float
    completed: float
    state: str


async def baseline_runs(api_url: str) -> list[BaselineRun]:
    from prefect import get_client
    from prefect.deployments.flow_runs import arun_deployment  # run_deployment, awaited

    from bench.latency import _start_process_worker, finished
    from deployments.sync import WorkflowDeployment, ensure_work_pool, sync_workflow

    pool = f"bench-api-process-{uuid.uuid4().hex[:6]}"
    log = Path(tempfile.mkdtemp(prefix="altlas-bench-worker-")) / "worker.log"
    async with get_client() as client:
        await ensure_work_pool(client, pool)
        spec = WorkflowDeployment("process", WORKFLOW_ID, 1, definition(), True)
        deployment_id = await sync_workflow(client, spec, work_pool=pool)
        worker = _start_process_worker(pool, api_url, log)
        try:
            runs = []
            for index in range(BASELINE_RUNS + 1):  # the first: a warm-up
                await asyncio.sleep(PAUSE_SECONDS)
                sent = time.time()
                flow_run = await arun_deployment(deployment_id, client=client, timeout=0)
                ended = await finished(client, flow_run.id, poll=0.1)
                times = await _prefect_times(client, str(flow_run.id), sent)
                if "RUNNING" not in times:
                    raise RuntimeError(f"run {flow_run.id} never ran; the worker's log: {log}")
                if index:
                    runs.append(
                        BaselineRun(
                            created=times["created"],
                            running=times["RUNNING"],
                            completed=max(times.values()),
                            state=(ended.state.name if ended.state else None) or "?",
                        )
                    )
            return runs
        finally:
            stop_process(worker)


# --- the worker process, instrumented --------------------------------------------------------


def serve_worker(records: Path) -> int:
    """The service's worker (`altlas-flows worker`) with timing: each run's wait for its
    history at the end (`Execution.history_written`), each write of the run recorder, and the
    runner's timelines; written to `records` as JSON when the worker stops (SIGTERM)."""
    from api.settings import get_api_settings
    from api.store.ports import StorePolicies, StoreRecorder
    from api.worker import run_service_worker
    from deployments.runner import WarmRunner, WorkerSettings
    from interpreter.run.execution import Execution
    from interpreter.run.services import NodeEvent, RunChange, TenantPolicy

    history: dict[str, tuple[float, float]] = {}
    writes: dict[str, list[float]] = {}
    stored: dict[str, dict[str, float]] = {}  # run id → phase → when its write committed
    policies: list[float] = []  # each run's read of its tenant's settings, seconds
    runners: list[WarmRunner] = []
    written, run_changed, node_changed, policy = (
        Execution.history_written,
        StoreRecorder.run_changed,
        StoreRecorder.node_changed,
        StorePolicies.policy,
    )

    async def timed_policy(ports: StorePolicies, tenant: str) -> TenantPolicy:
        started = time.perf_counter()
        try:
            return await policy(ports, tenant)
        finally:
            policies.append(time.perf_counter() - started)

    async def timed_history(execution: Execution) -> None:
        started = time.time()
        await written(execution)
        history[execution.run.id] = (started, time.time())

    async def timed_run_changed(recorder: StoreRecorder, tenant: str, change: RunChange) -> None:
        started = time.perf_counter()
        await run_changed(recorder, tenant, change)
        writes.setdefault(change.run_id, []).append(time.perf_counter() - started)
        stored.setdefault(change.run_id, {})[change.phase.value] = time.time()

    async def timed_node_changed(recorder: StoreRecorder, tenant: str, event: NodeEvent) -> None:
        started = time.perf_counter()
        await node_changed(recorder, tenant, event)
        writes.setdefault(event.run_id, []).append(time.perf_counter() - started)

    Execution.history_written = timed_history  # type: ignore[method-assign,assignment]
    StoreRecorder.run_changed = timed_run_changed  # type: ignore[method-assign,assignment]
    StoreRecorder.node_changed = timed_node_changed  # type: ignore[method-assign,assignment]
    StorePolicies.policy = timed_policy  # type: ignore[method-assign,assignment]

    def ready(runner: WarmRunner) -> None:
        runners.append(runner)
        (records.parent / "worker-ready").touch()

    code = run_service_worker(get_api_settings(), WorkerSettings(), ready=ready)
    timelines = {
        str(t.flow_run_id): {"offered": t.offered, "claimed": t.claimed, "started": t.started}
        for runner in runners
        for t in runner.timelines
    }
    found = {
        "history": history,
        "writes": writes,
        "stored": stored,
        "policies": policies,
        "timelines": timelines,
    }
    records.write_text(json.dumps(found))
    return code


# --- the API process, timed (ALTLAS_BENCH_API_PROFILE=1) ------------------------------------

PING = "db: pool pre-ping (BEGIN; ';'; ROLLBACK)"
BEGIN = "db: BEGIN"
STATEMENTS = "db: statements (prepare + execute, incl. BEGIN)"
COMMIT = "db: COMMIT"
ROUND_TRIPS = "database round trips per request (count)"
PHASES: dict[str, tuple[str, str, str]] = {
    # label: (module, attribute path, "sync" | "async"); looked up at call time by the API
    "auth: key lookup (find_api_key, 1st query)": ("api.auth", "find_api_key", "async"),
    "auth: HMAC verify": ("api.auth", "verify_api_key", "sync"),
    "run query (store get_run / list_runs)": ("api.store.runs", "get_run|list_runs", "async"),
    "redactor (cached 2 s: secrets query + decrypt)": (
        "api.redaction",
        "TenantRedactors.get",
        "async",
    ),
    "ui_url (Prefect url_for)": ("api.prefect_gateway", "PrefectGateway.ui_url", "sync"),
    "run_public (model + redaction)": ("api.queries.runs", "run_public", "sync"),
    "response validation + serialisation": ("fastapi.routing", "serialize_response", "async"),
    PING: (
        "sqlalchemy.dialects.postgresql.asyncpg",
        "AsyncAdapt_asyncpg_connection.ping",
        "sync",
    ),
    BEGIN: (
        "sqlalchemy.dialects.postgresql.asyncpg",
        "AsyncAdapt_asyncpg_connection._start_transaction",
        "async",
    ),
    STATEMENTS: (
        "sqlalchemy.dialects.postgresql.asyncpg",
        "AsyncAdapt_asyncpg_cursor._prepare_and_execute",
        "async",
    ),
    COMMIT: (
        "sqlalchemy.dialects.postgresql.asyncpg",
        "AsyncAdapt_asyncpg_connection.commit",
        "sync",
    ),
}
"""What the timed API measures: the wall time spent inside each function, summed."""


def serve_api_timed() -> int:
    """`altlas-flows api` (same settings, same uvicorn options) with the functions of `PHASES`
    timed, and the whole ASGI call; `GET /_bench/timings` answers the sums since the last call
    (and resets them): {label: [calls, seconds]}, with "requests" and "request (ASGI app)"."""
    import importlib

    import uvicorn

    from api.main import create_app
    from api.settings import get_api_settings

    sums: dict[str, list[float]] = {}

    def add(label: str, seconds: float) -> None:
        found = sums.setdefault(label, [0, 0.0])
        found[0] += 1
        found[1] += seconds

    def timed(label: str, function: Any, kind: str) -> Any:
        if kind == "async":

            async def timed_async(*args: Any, **kwargs: Any) -> Any:
                started = time.perf_counter()
                try:
                    return await function(*args, **kwargs)
                finally:
                    add(label, time.perf_counter() - started)

            return timed_async

        def timed_sync(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                add(label, time.perf_counter() - started)

        return timed_sync

    for label, (module_name, paths, kind) in PHASES.items():
        module = importlib.import_module(module_name)
        for path in paths.split("|"):
            owner: Any = module
            *parents, name = path.split(".")
            for parent in parents:
                owner = getattr(owner, parent)
            setattr(owner, name, timed(label, getattr(owner, name), kind))

    settings = get_api_settings()
    app = create_app(settings)

    async def timed_app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        if scope["path"] == "/_bench/timings":
            body = json.dumps(sums).encode()
            sums.clear()
            headers = [(b"content-type", b"application/json")]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.body", "body": body})
            return
        started = time.perf_counter()
        try:
            await app(scope, receive, send)
        finally:
            add("request (ASGI app)", time.perf_counter() - started)

    uvicorn.run(timed_app, host=settings.api_host, port=settings.api_port, log_level="info")
    return 0


# --- the benchmark ---------------------------------------------------------------------------


async def measure(service: Service) -> dict[str, Any]:
    import httpx

    async with httpx.AsyncClient(base_url=service.url, timeout=30) as client:
        await provision(client, service)
        warm_up = await api_run(client, service)  # first imports and flow of the worker
        model = (await client.get(f"/v1/runs/{warm_up.run_id}", headers=service.auth)).json()
    await fill_store(service, model, STORED_RUNS - 1)
    read_cells = await reads(service, warm_up.run_id)
    runs = await api_runs(service)
    return {"reads": read_cells, "runs": runs}


def main() -> dict[str, Any]:
    from prefect.settings import PREFECT_API_URL

    api_url = str(PREFECT_API_URL.value())
    print("starting the API and the service's worker ...", flush=True)
    with running_service() as service:
        found = asyncio.run(measure(service))
    worker = json.loads(service.worker_records.read_text())
    found["baseline"] = asyncio.run(baseline_runs(api_url))
    return report(found, worker)


def report(found: dict[str, Any], worker: dict[str, Any]) -> dict[str, Any]:
    cells: dict[tuple[str, int], Cell] = found["reads"]
    print(f"\n(e) REST facade reads, {STORED_RUNS} runs stored, {REQUESTS} requests per cell")
    print(f"  {'endpoint':<9} {'conc.':>5} {'p50':>8} {'p95':>8} {'req/s':>7}  vs healthz p50")
    figures: dict[str, Any] = {"reads": {}}
    for (name, concurrency), cell in cells.items():
        key = f"{name}@{concurrency}"
        if cell.failure is not None:
            print(
                f"  {name:<9} {concurrency:>5}   FAILED: {cell.errors} failed requests, the first "
                f"{cell.failure} ({len(cell.latencies)} succeeded)"
            )
            figures["reads"][key] = {"errors": cell.errors, "failure": cell.failure}
            continue
        base = cells[("healthz", concurrency)]
        versus = ""
        if name != "healthz" and base.latencies:
            extra = cell.p(0.5) - base.p(0.5)
            versus = f"+{extra * 1000:.2f} ms ({cell.p(0.5) / base.p(0.5):.1f}x)"
        print(
            f"  {name:<9} {concurrency:>5} {cell.p(0.5) * 1000:>6.2f}ms "
            f"{cell.p(0.95) * 1000:>6.2f}ms {cell.rps:>7.0f}  {versus}"
        )
        figures["reads"][key] = {
            "p50_ms": cell.p(0.5) * 1000,
            "p95_ms": cell.p(0.95) * 1000,
            "rps": cell.rps,
        }

    if PROFILE:
        figures["phases"] = phases(cells)
    runs: list[ApiRun] = found["runs"]
    baseline: list[BaselineRun] = found["baseline"]
    print(f"\n(e) startRun → Running / Completed, 3-node chain, {len(runs)} API runs, "
          f"{len(baseline)} process-worker runs; seconds after the request")  # fmt: skip
    print(
        f"  {'path: measured at':<48} {'Running p50':>11} {'p95':>6} "
        f"{'Completed p50':>14} {'p95':>6}"
    )

    def row(label: str, running: list[float], completed: list[float]) -> dict[str, float]:
        if not running or not completed:
            print(f"  {label:<48} {'n/a':>11}")
            return {}
        stats = {
            "running_p50": statistics.median(running),
            "running_p95": _p(running, 0.95),
            "completed_p50": statistics.median(completed),
            "completed_p95": _p(completed, 0.95),
        }
        print(
            f"  {label:<48} {stats['running_p50']:>10.3f}s {stats['running_p95']:>5.3f}s "
            f"{stats['completed_p50']:>13.3f}s {stats['completed_p95']:>5.3f}s"
        )
        return stats

    stored = [(r, worker["stored"][r.run_id]) for r in runs if r.run_id in worker["stored"]]
    polled = [r for r in runs if "running" in r.seen and "completed" in r.seen]
    figures["runs"] = {
        "api_store": row(
            "API: state committed to the store (getRun)",
            [at["running"] - r.sent for r, at in stored],
            [at["completed"] - r.sent for r, at in stored],
        ),
        "api_polled": row(
            f"API: getRun polled every {POLL_SECONDS * 1000:.0f} ms",
            [r.seen["running"] for r in polled],
            [r.seen["completed"] for r in polled],
        ),
        "api_engine": row(
            "API: the run's started_at / finished_at",
            [r.started_at for r in runs],
            [r.finished_at for r in runs],
        ),
        "api_prefect": row(
            "API: its flow run's Running / Completed state",
            [r.prefect["RUNNING"] for r in runs],
            [r.prefect["COMPLETED"] for r in runs],
        ),
        "process_worker": row(
            "process worker: Running / Completed state",
            [r.running for r in baseline],
            [r.completed for r in baseline],
        ),
    }
    api, process = figures["runs"]["api_store"], figures["runs"]["process_worker"]
    if api and process:
        print(
            f"  ratio (process worker / API, store): Running "
            f"{process['running_p50'] / api['running_p50']:.1f}x, Completed "
            f"{process['completed_p50'] / api['completed_p50']:.1f}x (p50; target: API "
            "Completed p50 <= 1 s)"
        )
    not_completed = [r.state for r in runs if r.state != "completed"]
    not_completed += [r.state for r in baseline if r.state != "Completed"]
    if not_completed:
        print(f"  runs that did not complete: {not_completed}")
    figures["steps"], figures["writes_per_run"] = steps(runs, worker)
    print("  API path, where the time goes (medians):")
    for step, seconds in figures["steps"].items():
        print(f"    {step:<58} {seconds * 1000:7.1f} ms")
    print(f"    {'recorder writes per run':<58} {figures['writes_per_run']:7.0f}")
    return figures


def steps(runs: list[ApiRun], worker: dict[str, Any]) -> tuple[dict[str, float], float]:
    """Median seconds of each step of an API run, from the benchmark's, the worker's and
    Prefect's clocks (one machine); and the median count of recorder writes per run."""
    found: dict[str, list[float]] = {}
    counts: list[int] = []

    def add(name: str, value: float | None) -> None:
        if value is not None:
            found.setdefault(name, []).append(value)

    for run in runs:
        timeline = worker["timelines"].get(run.flow_run_id, {})
        history = worker["history"].get(run.run_id)
        writes: list[float] = worker["writes"].get(run.run_id, [])
        created, running, completed = (run.prefect[k] for k in ("created", "RUNNING", "COMPLETED"))
        offered = _since(timeline.get("offered"), run.sent)
        started = _since(timeline.get("started"), run.sent)
        add("startRun answered (202)", run.accepted)
        add("202 → flow run created (dispatcher)", created - run.accepted)
        add("created → event received by the worker", _minus(offered, created))
        add("event → run's thread started (read, claim Pending)", _minus(started, offered))
        add("thread started → Prefect Running (Prefect's engine)", _minus(running, started))
        add("Prefect Running → started_at (the flow's own set-up)", run.started_at - running)
        committed = worker["stored"].get(run.run_id, {})
        if "running" in committed:
            add("started_at → running committed (recorder)", committed["running"] - run.sent
                - run.started_at)  # fmt: skip
        add("started_at → finished_at (the 3 nodes)", run.finished_at - run.started_at)
        if history is not None:
            add("finished_at → history written (waits for recorder)", history[1] - history[0])
            add("history written → Prefect Completed", completed - (history[1] - run.sent))
        if "completed" in committed:
            add("completed committed → Prefect Completed", completed - (committed["completed"]
                - run.sent))  # fmt: skip
        if writes:
            counts.append(len(writes))
            add("recorder write, each (median)", statistics.median(writes))
            add("recorder writes, sum per run", sum(writes))
    medians: dict[str, float] = {}
    for name, values in found.items():
        medians[name] = statistics.median(values)
        if name.startswith("Prefect Running → started_at") and len(worker["policies"]) > 1:
            # not per run: the worker's reads, but for the warm-up run's
            medians["  of which: the tenant's settings read"] = statistics.median(
                worker["policies"][1:]
            )
    return medians, statistics.median(counts) if counts else 0.0


def phases(cells: dict[tuple[str, int], Cell]) -> dict[str, dict[str, float]]:
    """Print and return, per endpoint at concurrency 1, the mean milliseconds per request spent
    in each timed function of the API (`PHASES`; they nest: the driver's calls are inside the
    queries), the ASGI call in all, and what the client saw beyond it (HTTP, uvicorn, client)."""
    found: dict[str, dict[str, float]] = {}
    for (name, concurrency), cell in cells.items():
        if concurrency != 1 or "request (ASGI app)" not in cell.phases:
            continue
        requests = cell.phases["request (ASGI app)"][0]
        table = {label: seconds * 1000 / requests for label, (_, seconds) in cell.phases.items()}
        calls = {label: cell.phases.get(label, [0, 0.0])[0] for label in PHASES}
        table[ROUND_TRIPS] = (
            3 * calls[PING] + sum(calls[k] for k in (BEGIN, STATEMENTS, COMMIT))
        ) / requests
        table["client latency beyond the ASGI call (mean)"] = (
            statistics.mean(cell.latencies) * 1000 - table["request (ASGI app)"]
        )
        found[name] = table
    print("\n  where the time goes in the API (concurrency 1, mean ms per request)")
    labels = ["request (ASGI app)", *PHASES, ROUND_TRIPS,
              "client latency beyond the ASGI call (mean)"]  # fmt: skip
    names = list(found)
    print(f"    {'':<50}" + "".join(f"{n:>10}" for n in names))
    for label in labels:
        values = "".join(f"{found[n].get(label, 0.0):>10.2f}" for n in names)
        print(f"    {label:<50}{values}")
    return found


def _since(stamp: float | None, origin: float) -> float | None:
    return None if stamp is None else stamp - origin


def _minus(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


def _p(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


if __name__ == "__main__":  # the processes of `running_service`
    if sys.argv[1:2] == ["api"]:
        sys.exit(serve_api_timed())
    if sys.argv[1:2] != ["worker"]:
        sys.exit(
            "usage: python -m bench.api worker RECORDS | api (the benchmark: python -m bench api)"
        )
    sys.exit(serve_worker(Path(sys.argv[2])))
