"""(d) Trigger latency: a deployment run's creation → Running and → Completed, for the warm runner
(`deployments.runner.WarmRunner`) and for Prefect's own process worker, on the same server.

Both paths run the same 3-node `core.transform` workflow, synced by `deployments.sync` into two
work pools (one per path), `RUNS` runs each, one at a time with a short pause (latency, not
throughput), after one warm-up run. Times come from Prefect's own records: the flow run's
`created` timestamp and the timestamps of its Running and final states, so how the benchmark
waits does not matter. The process worker is `prefect worker start --pool P --type process`, a
subprocess with Prefect's defaults (it polls every 10 s and starts a Python process per run).
**Target: Completed p50 <= 1 s for the warm runner.**

For the warm runner the benchmark also shows where the time goes: the runner's own timeline of
each run (event received, run read, claimed, thread started), the API requests made per run
(counted at the HTTP client, by who made them), and how long the engine took to set up. For both
paths it shows the CPU time per run of the Prefect server's processes and of the worker (for
Prefect's worker, with the Python processes it starts per run; for the warm runner, this whole
process, the benchmark's own client included), less what they use idle.

The same workflow is also run through the service, as a client starts it: the API (one
`uvicorn` process, its dispatcher inside) and the service's warm worker (a process of its own),
on a fresh PostgreSQL store (`bench.hooks.running_service`), `RUNS` runs through `startRun` and
`RUNS` through a signed webhook delivery (`hmac-sha256`, a delivery id of its own each),
alternately, one at a time, each timed from the moment its request is sent: the 202, the flow
run's creation by the dispatcher, the `Scheduled` event reaching the worker, the claim, the
run's thread, Prefect's Running and Completed states, and the recorder's commits of `running`
and `completed` to the store (what getRun shows). With the Prefect API requests per run of the
dispatcher, the runner and the engine (counted in their processes). **Target: p50 <= 150 ms
to Running and <= 250 ms to Completed.**

`ALTLAS_BENCH_LATENCY_RUNS` sets the number of runs of the warm runner and of each API path
(default 50), `ALTLAS_BENCH_LATENCY_PROCESS_RUNS` those of the process worker (default 10:
each takes ~10 s), `ALTLAS_BENCH_LATENCY_PATHS` the paths (`warm,api,process`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import TYPE_CHECKING, Any
from uuid import UUID

if TYPE_CHECKING:
    from prefect.client.orchestration import PrefectClient
    from prefect.client.schemas.objects import FlowRun

    from deployments.runner import RunTimeline, WarmRunner

RUNS = int(os.environ.get("ALTLAS_BENCH_LATENCY_RUNS", "50"))
PROCESS_RUNS = int(os.environ.get("ALTLAS_BENCH_LATENCY_PROCESS_RUNS", "10"))
PATHS = os.environ.get("ALTLAS_BENCH_LATENCY_PATHS", "warm,api,process").split(",")
PAUSE_SECONDS = 0.5
POLL_SECONDS = 0.2
"""How often the benchmark reads a run while it waits (the figures come from Prefect's
timestamps; reading more often would only load the server)."""
WORKFLOW_ID = "bench-latency"


def definition() -> dict[str, Any]:
    """Three `core.transform` nodes in a row."""
    return {
        "format": 1,
        "id": WORKFLOW_ID,
        "name": "Latency",
        "description": "three transforms in a row (bench/latency.py)",
        "nodes": [
            {"id": "first", "piece": "core.transform", "input": {"value": 1}},
            {"id": "second", "piece": "core.transform", "input": {"value": _plus_one("first")}},
            {"id": "third", "piece": "core.transform", "input": {"value": _plus_one("second")}},
        ],
        "edges": [{"from": "first", "to": "second"}, {"from": "second", "to": "third"}],
        "output": "{{ nodes.third.output }}",
    }


def _plus_one(node: str) -> str:
    return "{{ nodes." + node + ".output + 1 }}"


@dataclass(frozen=True)
class RunFigures:
    """One run, in seconds after Prefect created it."""

    flow_run_id: UUID
    pending: float | None
    running: float
    completed: float
    state: str


async def deploy(client: PrefectClient, pool: str, tenant: str) -> UUID:
    from deployments.sync import WorkflowDeployment, ensure_work_pool, sync_workflow

    await ensure_work_pool(client, pool)
    spec = WorkflowDeployment(tenant, WORKFLOW_ID, 1, definition(), True)
    return await sync_workflow(client, spec, work_pool=pool)


async def one_run(client: PrefectClient, deployment_id: UUID, *, poll: float) -> RunFigures:
    """Create a run, wait until it ends, and read its figures from Prefect's records."""
    created = await client.create_flow_run_from_deployment(deployment_id)
    flow_run = await finished(client, created.id, poll=poll)
    states = sorted(await client.read_flow_run_states(created.id), key=lambda s: s.timestamp)
    start = flow_run.created
    assert start is not None

    def first(kind: str) -> float | None:
        for state in states:
            if state.type.value == kind:
                return (state.timestamp - start).total_seconds()
        return None

    running, final = first("RUNNING"), states[-1]
    if running is None:
        raise RuntimeError(f"run {created.id} never ran: {final.type.value} {final.message}")
    return RunFigures(
        flow_run_id=created.id,
        pending=first("PENDING"),
        running=running,
        completed=(final.timestamp - start).total_seconds(),
        state=final.name or final.type.value,
    )


async def finished(client: PrefectClient, flow_run_id: UUID, *, poll: float) -> FlowRun:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        flow_run = await client.read_flow_run(flow_run_id)
        if flow_run.state is not None and flow_run.state.is_final():
            return flow_run
        await asyncio.sleep(poll)
    raise RuntimeError(f"flow run {flow_run_id} did not finish within 120 s")


# --- counting API requests -------------------------------------------------------------------

_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


class RequestCounter:
    """Counts the HTTP requests this process sends, by who sent them: the runner's own client,
    the runs' threads (the engine), or the benchmark itself (left out of the figures)."""

    def __init__(self) -> None:
        self.counts: Counter[tuple[str, str]] = Counter()
        self.runner_client: object | None = None
        self.bench_client: object | None = None
        self.active = False
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def installed(self) -> Iterator[RequestCounter]:
        import httpx

        original = httpx.AsyncClient.send
        counter = self

        async def send(client: httpx.AsyncClient, request: httpx.Request, **kw: Any) -> Any:
            if counter.active and client is not counter.bench_client:
                who = "runner" if client is counter.runner_client else "engine"
                path = _UUID.sub("{id}", request.url.path.removeprefix("/api"))
                with counter._lock:
                    counter.counts[(who, f"{request.method} {path}")] += 1
            return await original(client, request, **kw)

        httpx.AsyncClient.send = send  # type: ignore[method-assign,assignment]
        try:
            yield self
        finally:
            httpx.AsyncClient.send = original  # type: ignore[method-assign]


def _httpx_client(prefect_client: Any) -> object | None:
    return getattr(prefect_client, "_client", None)


# --- CPU time ---------------------------------------------------------------------------------


class CpuMeter:
    """CPU seconds used by some processes, from `/proc`, less their idle rate measured first:
    a process group (the Prefect server), or one process with the children it has reaped (a
    process worker, once its runs' processes have ended)."""

    def __init__(self, *, group: int | None = None, pid: int | None = None) -> None:
        self.group, self.pid = group, pid
        self.rate = 0.0
        self.start = (0.0, 0.0)

    @classmethod
    def of_server(cls) -> CpuMeter:
        """The Prefect server answering at `PREFECT_API_URL` (on this machine)."""
        from urllib.parse import urlsplit

        from prefect.settings import PREFECT_API_URL

        from deployments.local import listening_process

        port = urlsplit(str(PREFECT_API_URL.value())).port
        found = listening_process(port) if port else None
        return cls(group=found.process_group if found else None)

    def used(self) -> float:
        ticks = 0
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            if self.pid is not None and int(entry.name) != self.pid:
                continue
            try:
                text = (entry / "stat").read_text()
            except OSError:
                continue
            fields = text[text.rindex(")") + 2 :].split()
            if self.pid is not None or int(fields[2]) == self.group:  # pgrp
                ticks += sum(int(f) for f in fields[11:15])  # utime stime cutime cstime
        return ticks / os.sysconf("SC_CLK_TCK")

    async def idle(self, seconds: float = 5.0) -> None:
        """Measure the idle rate, then start counting."""
        before, started = self.used(), time.monotonic()
        await asyncio.sleep(seconds)
        self.rate = (self.used() - before) / (time.monotonic() - started)
        self.start = (self.used(), time.monotonic())

    def per_run(self, runs: int) -> float:
        used, at = self.start
        spent = self.used() - used - self.rate * (time.monotonic() - at)
        return spent / runs


# --- the two paths -----------------------------------------------------------------------------


async def warm_path(client: PrefectClient, counter: RequestCounter) -> dict[str, Any]:
    from deployments.runner import WarmRunner, WorkerSettings

    deployment_id = await deploy(client, "bench-warm", "warm")
    settings = WorkerSettings(poll_seconds=10.0)
    async with WarmRunner(work_pool="bench-warm", concurrency=4, settings=settings) as runner:
        counter.runner_client = _httpx_client(runner._client)
        counter.bench_client = _httpx_client(client)
        await one_run(client, deployment_id, poll=POLL_SECONDS)  # warm-up
        server, worker = CpuMeter.of_server(), CpuMeter(pid=os.getpid())
        await asyncio.gather(server.idle(), worker.idle())
        counter.active = True
        figures = []
        for _ in range(RUNS):
            await asyncio.sleep(PAUSE_SECONDS)
            figures.append(await one_run(client, deployment_id, poll=POLL_SECONDS))
        counter.active = False
        cpu = {"server": server.per_run(RUNS), "worker": worker.per_run(RUNS)}
        profile = await _profile(runner, figures, client)
    return {"figures": figures, "profile": profile, "cpu": cpu}


async def _profile(
    runner: WarmRunner, figures: list[RunFigures], client: PrefectClient
) -> dict[str, float]:
    """Median seconds of each step of the warm path, from the runner's timeline and Prefect's
    timestamps (all on this machine's clock)."""
    by_id: dict[UUID, RunTimeline] = {t.flow_run_id: t for t in runner.timelines}
    steps: dict[str, list[float]] = {}
    for run in figures:
        timeline = by_id.get(run.flow_run_id)
        if timeline is None or timeline.claimed is None or timeline.started is None:
            continue
        flow_run = await client.read_flow_run(run.flow_run_id)
        assert flow_run.created is not None
        created = flow_run.created.timestamp()
        marks = {
            "event received (server → runner)": timeline.offered - created,
            "run read": (timeline.read or timeline.offered) - timeline.offered,
            "claimed (Pending + history check)": timeline.claimed
            - (timeline.read or timeline.offered),
            "handed to its thread": timeline.started - timeline.claimed,
            "engine set-up until Running": created + run.running - timeline.started,
            "flow: Running → Completed": run.completed - run.running,
        }
        for name, seconds in marks.items():
            steps.setdefault(name, []).append(seconds)
    return {name: statistics.median(values) for name, values in steps.items()}


async def process_path(client: PrefectClient, api_url: str) -> dict[str, Any]:
    deployment_id = await deploy(client, "bench-process", "process")
    log = Path(tempfile.mkdtemp(prefix="altlas-bench-worker-")) / "worker.log"
    worker = _start_process_worker("bench-process", api_url, log)
    try:
        await one_run(client, deployment_id, poll=POLL_SECONDS)  # warm-up
        await asyncio.sleep(5)  # its process exits and is reaped before the idle rate is taken
        server, process_worker = CpuMeter.of_server(), CpuMeter(pid=worker.pid)
        await asyncio.gather(server.idle(), process_worker.idle())
        figures = []
        for _ in range(PROCESS_RUNS):
            await asyncio.sleep(PAUSE_SECONDS)
            figures.append(await one_run(client, deployment_id, poll=POLL_SECONDS))
        await asyncio.sleep(5)  # the last run's process exits and is reaped
        cpu = {
            "server": server.per_run(PROCESS_RUNS),
            "worker": process_worker.per_run(PROCESS_RUNS),
        }
        return {"figures": figures, "cpu": cpu}
    except RuntimeError as exc:
        raise RuntimeError(f"{exc}; the worker's log: {log}") from None
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(worker.pid, signal.SIGTERM)
        try:
            worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait()


def _start_process_worker(pool: str, api_url: str, log: Path) -> subprocess.Popen[bytes]:
    """`prefect worker start --pool POOL --type process`, Prefect's defaults, in its own
    process group."""
    env = {**os.environ, "PREFECT_API_URL": api_url}
    command = [sys.executable, "-m", "prefect", "worker", "start", "--pool", pool,
               "--type", "process"]  # fmt: skip
    with log.open("wb") as out:
        return subprocess.Popen(
            command, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )


async def measure() -> dict[str, Any]:
    from prefect import get_client
    from prefect.settings import PREFECT_API_URL

    api_url = str(PREFECT_API_URL.value())
    counter = RequestCounter()
    found: dict[str, Any] = {"requests": counter.counts}
    async with get_client() as client:
        if "warm" in PATHS:
            with counter.installed():
                found["warm"] = await warm_path(client, counter)
        if "process" in PATHS:
            found["process"] = await process_path(client, api_url)
    return found


# --- through the service: startRun and a webhook --------------------------------------------------


@dataclass
class ApiRun:
    """One run started through the API; `time.time()` seconds, and when it was seen."""

    path: str
    run_id: str
    sent: float
    answered: float
    state: str = ""
    flow_run_id: str = ""
    prefect: dict[str, float] = field(default_factory=dict)  # created, RUNNING, COMPLETED


def api_paths() -> dict[str, Any]:
    """`RUNS` runs through startRun and `RUNS` through a signed webhook, alternately, on a
    service of their own (store, API, worker); the runs, and what the worker and the API
    recorded."""
    from bench.hooks import provision, read_records, running_service, start_worker

    with running_service(processes=1, gated=False) as service:
        asyncio.run(provision(service))
        start_worker(service)
        runs = asyncio.run(_api_runs(service))
    worker, api = read_records(service)  # written by the processes as they stopped
    return {"runs": runs, "worker": worker, "api": api}


async def _api_runs(service: Any) -> list[ApiRun]:
    from prefect import get_client

    from bench.hooks import WORKFLOW_ID, HttpConnection, delivery

    connection = HttpConnection(service.servers[0].url)
    auth = {"Authorization": f"Bearer {service.key}", "Content-Type": "application/json"}

    async def start(path: str, n: int) -> ApiRun:
        if path == "startRun":
            body = json.dumps({"parameters": {"n": n}}).encode()
            target, headers = f"/v1/workflows/{WORKFLOW_ID}/runs", auth
        else:
            body, headers = delivery("signed", n)
            target = service.hook_path("signed")
        sent = time.time()
        status, answer = await connection.request("POST", target, body, headers)
        answered = time.time()
        if status != 202:
            raise RuntimeError(f"{path}: {status} {answer[:300]!r}")
        found = json.loads(answer)
        return ApiRun(path, found.get("run_id") or found["id"], sent, answered)

    async def wait(run: ApiRun) -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            await asyncio.sleep(POLL_SECONDS)
            _, answer = await connection.request("GET", f"/v1/runs/{run.run_id}", b"", auth)
            found = json.loads(answer)
            if found["state"] in ("completed", "failed", "timed_out", "cancelled", "crashed"):
                run.state, run.flow_run_id = found["state"], found["flow_run_id"]
                return
        raise RuntimeError(f"run {run.run_id} did not finish within 120 s")

    for path in ("startRun", "webhook"):  # warm-up: the first run of each path
        await wait(await start(path, 0))
    runs = []
    for number in range(2 * RUNS):
        await asyncio.sleep(PAUSE_SECONDS)
        run = await start(("startRun", "webhook")[number % 2], number)
        await wait(run)
        runs.append(run)
    await connection.close()
    async with get_client() as client:
        for run in runs:
            flow_run = await client.read_flow_run(UUID(run.flow_run_id))
            assert flow_run.created is not None
            run.prefect["created"] = flow_run.created.timestamp()
            states = sorted(await client.read_flow_run_states(flow_run.id), key=_at)
            for state in states:
                run.prefect.setdefault(state.type.value, state.timestamp.timestamp())
    return runs


def _at(state: Any) -> float:
    stamp: float = state.timestamp.timestamp()
    return stamp


API_STAGES = (
    "request → 202 (accepted: recorded, committed)",
    "202 → flow run created (dispatcher)",
    "created → Scheduled event at the worker",
    "event → claimed (read, Pending, history check)",
    "claimed → the run's thread",
    "thread → Prefect Running (engine set-up)",
    "Running → running committed to the store",
    "Running → Prefect Completed (flow)",
    "Prefect Completed → completed in the store",
)


def api_stages(runs: list[ApiRun], worker: dict[str, Any]) -> dict[str, dict[str, float]]:
    """Per path: the median of each stage (`API_STAGES`), and p50/p95 to Running and
    Completed (Prefect's states) and to the store's `running` / `completed`."""
    found: dict[str, dict[str, list[float]]] = {}
    for run in runs:
        t = worker.get("timelines", {}).get(run.flow_run_id, {})
        stored = worker.get("stored", {}).get(run.run_id, {})
        p = run.prefect
        if not t.get("claimed") or "RUNNING" not in p or "COMPLETED" not in p:
            continue
        marks = {
            API_STAGES[0]: run.answered - run.sent,
            API_STAGES[1]: p["created"] - run.answered,
            API_STAGES[2]: t["offered"] - p["created"],
            API_STAGES[3]: t["claimed"] - t["offered"],
            API_STAGES[4]: t["started"] - t["claimed"],
            API_STAGES[5]: p["RUNNING"] - t["started"],
            API_STAGES[6]: stored.get("running", float("nan")) - p["RUNNING"],
            API_STAGES[7]: p["COMPLETED"] - p["RUNNING"],
            API_STAGES[8]: stored.get("completed", float("nan")) - p["COMPLETED"],
            "→ Running": p["RUNNING"] - run.sent,
            "→ Completed": p["COMPLETED"] - run.sent,
            "→ running in the store": stored.get("running", float("nan")) - run.sent,
            "→ completed in the store": stored.get("completed", float("nan")) - run.sent,
        }
        for name, value in marks.items():
            found.setdefault(run.path, {}).setdefault(name, []).append(value)
    table: dict[str, dict[str, float]] = {}
    for path, marks_of in found.items():
        row = table[path] = {}
        for name, values in marks_of.items():
            values = [v for v in values if v == v]  # no NaN
            if not values:
                continue
            row[name] = statistics.median(values)
            if name.startswith("→"):
                row[name + " p95"] = _p(values, 0.95)
    return table


def engine_stages(runs: list[ApiRun], worker: dict[str, Any]) -> dict[str, dict[str, float]]:
    """Per path: the medians between consecutive points of a run in the worker (the runner's
    thread start, then `bench.hooks.ENGINE_MARKS`), in seconds."""
    from bench.hooks import ENGINE_MARKS

    found: dict[str, dict[str, list[float]]] = {}
    for run in runs:
        t = worker.get("timelines", {}).get(run.flow_run_id, {})
        marks = worker.get("marks", {}).get(run.flow_run_id, {})
        if not t.get("started") or not marks:
            continue
        points = [("the run's thread started", t["started"])]
        points += [(label, marks[label]) for label in ENGINE_MARKS if label in marks]
        for (before, at), (label, then) in pairwise(points):
            name = f"{before} → {label}"
            found.setdefault(run.path, {}).setdefault(name, []).append(then - at)
    return {
        path: {name: statistics.median(values) for name, values in steps.items()}
        for path, steps in found.items()
    }


def _p(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def _stats(running: list[float], completed: list[float]) -> dict[str, float]:
    return {
        "running_p50": statistics.median(running),
        "running_p95": _p(running, 0.95),
        "completed_p50": statistics.median(completed),
        "completed_p95": _p(completed, 0.95),
    }


def main() -> dict[str, Any]:
    load = [os.getloadavg()[0]]
    found = asyncio.run(measure()) if {"warm", "process"} & set(PATHS) else {"requests": {}}
    load.append(os.getloadavg()[0])
    if "api" in PATHS:
        found["api"] = api_paths()
        load.append(os.getloadavg()[0])
    print(
        f"\n(d) trigger latency, 3-node core.transform workflow; {RUNS} runs per path, "
        f"{PROCESS_RUNS} for the process worker (load average {min(load):.1f}-{max(load):.1f})"
    )
    print(f"  {'path (timed from)':<40} {'→ Running p50':>14} {'p95':>7} {'→ Completed p50':>16} "
          f"{'p95':>7}")  # fmt: skip
    stats: dict[str, dict[str, float]] = {}
    if "warm" in found:
        warm: list[RunFigures] = found["warm"]["figures"]
        stats["warm runner (flow run created)"] = _stats(
            [r.running for r in warm], [r.completed for r in warm]
        )
    stages: dict[str, dict[str, float]] = {}
    if "api" in found:
        stages = api_stages(found["api"]["runs"], found["api"]["worker"])
        for path, row in stages.items():
            stats[f"API {path} (request sent)"] = {
                "running_p50": row["→ Running"],
                "running_p95": row["→ Running p95"],
                "completed_p50": row["→ Completed"],
                "completed_p95": row["→ Completed p95"],
            }
            if "→ completed in the store" in row:
                stats[f"API {path}: the store (getRun)"] = {
                    "running_p50": row["→ running in the store"],
                    "running_p95": row["→ running in the store p95"],
                    "completed_p50": row["→ completed in the store"],
                    "completed_p95": row["→ completed in the store p95"],
                }
    if "process" in found:
        process: list[RunFigures] = found["process"]["figures"]
        stats["process worker (flow run created)"] = _stats(
            [r.running for r in process], [r.completed for r in process]
        )
    for name, s in stats.items():
        print(
            f"  {name:<40} {s['running_p50']:>13.3f}s {s['running_p95']:>6.3f}s "
            f"{s['completed_p50']:>15.3f}s {s['completed_p95']:>6.3f}s"
        )
    ratio: dict[str, float] = {}
    process_row = stats.get("process worker (flow run created)")
    fastest = [k for k in stats if k.startswith(("API", "warm")) and "store" not in k]
    if process_row and fastest:
        for name in fastest:
            ratio[name] = process_row["completed_p50"] / stats[name]["completed_p50"]
        print("  process worker / path, Completed p50: " + ", ".join(
            f"{name.split(' (')[0]} {value:.1f}x" for name, value in ratio.items()
        ))  # fmt: skip
    runs_all: list[Any] = []
    for key in ("warm", "process"):
        runs_all += [r.state for r in found.get(key, {}).get("figures", [])]
    bad = [s for s in runs_all if s != "Completed"]
    bad += [r.state for r in found.get("api", {}).get("runs", []) if r.state != "completed"]
    if bad:
        print(f"  runs that did not complete: {Counter(bad)}")
    if "process" in found:
        process = found["process"]["figures"]
        pending = [r.pending for r in process if r.pending is not None]
        if pending:
            print(
                f"  process worker: claimed (Pending) after {statistics.median(pending):.2f}s "
                f"p50, then {statistics.median(r.running - (r.pending or 0) for r in process):.2f}"
                "s to Running (a new Python process)"
            )
    for name, key in (("warm runner", "warm"), ("process worker", "process")):
        if key in found:
            cpu = found[key]["cpu"]
            print(
                f"  CPU per run, {name}: Prefect server {cpu['server'] * 1000:.0f} ms, "
                f"worker {cpu['worker'] * 1000:.0f} ms"
            )
    if "warm" in found:
        print("  warm runner, where the time goes (medians):")
        for step, seconds in found["warm"]["profile"].items():
            print(f"    {step:<36} {seconds * 1000:7.0f} ms")
        requests: Counter[tuple[str, str]] = found["requests"]
        for who in ("runner", "engine"):
            mine = {k[1]: v / RUNS for k, v in requests.items() if k[0] == who}
            total = sum(mine.values())
            detail = ", ".join(
                f"{path} {n:.1f}" for path, n in sorted(mine.items(), key=lambda i: -i[1])
            )
            print(f"  API requests per run by the {who}: {total:.1f} ({detail})")
    if stages:
        paths = list(stages)
        print("  API paths, where the time goes (medians, ms):")
        print(f"    {'stage':<52}" + "".join(f"{p:>10}" for p in paths))
        for stage in API_STAGES:
            values = "".join(f"{stages[p].get(stage, float('nan')) * 1000:>10.1f}" for p in paths)
            print(f"    {stage:<52}{values}")
        inside = engine_stages(found["api"]["runs"], found["api"]["worker"])
        if inside:
            print("  inside the worker, from the run's thread (medians, ms):")
            names = list(next(iter(inside.values())))
            for name in names:
                values = "".join(
                    f"{inside[p].get(name, float('nan')) * 1000:>10.1f}" for p in paths
                )
                print(f"    {name:<72}{values}")
        count = 2 * RUNS + 2  # with the warm-up runs
        by_sender: dict[str, Counter[str]] = {}
        for key, n in found["api"]["worker"].get("requests", {}).items():
            who, request = key.split(" ", 1)
            by_sender.setdefault(who, Counter())[request] += n
        for key, n in found["api"]["api"]["requests"].items():
            by_sender.setdefault("API (dispatcher, follower)", Counter())[key.split(" ", 1)[1]] += n
        for who, counts in by_sender.items():
            per = {request: n / count for request, n in counts.items()}
            detail = ", ".join(f"{r} {n:.1f}" for r, n in sorted(per.items(), key=lambda i: -i[1]))
            print(f"  Prefect API requests per API run by the {who}: {sum(per.values()):.1f} "
                  f"({detail})")  # fmt: skip
    return {"stats": stats, "ratio": ratio, "stages": stages}
