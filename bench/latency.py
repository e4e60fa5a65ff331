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

`ALTLAS_BENCH_LATENCY_RUNS` sets the number of runs per path (default 30).
"""

from __future__ import annotations

import asyncio
import contextlib
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
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from uuid import UUID

if TYPE_CHECKING:
    from prefect.client.orchestration import PrefectClient
    from prefect.client.schemas.objects import FlowRun

    from deployments.runner import RunTimeline, WarmRunner

RUNS = int(os.environ.get("ALTLAS_BENCH_LATENCY_RUNS", "30"))
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
        for _ in range(RUNS):
            await asyncio.sleep(PAUSE_SECONDS)
            figures.append(await one_run(client, deployment_id, poll=POLL_SECONDS))
        await asyncio.sleep(5)  # the last run's process exits and is reaped
        cpu = {"server": server.per_run(RUNS), "worker": process_worker.per_run(RUNS)}
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
    async with get_client() as client:
        with counter.installed():
            warm = await warm_path(client, counter)
        process = await process_path(client, api_url)
    return {"warm": warm, "process": process, "requests": counter.counts}


def _p(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def main() -> dict[str, Any]:
    found = asyncio.run(measure())
    warm: list[RunFigures] = found["warm"]["figures"]
    process: list[RunFigures] = found["process"]["figures"]
    rows = {"warm runner": warm, "process worker": process}
    print(f"\n(d) trigger latency, 3-node core.transform workflow, {RUNS} runs per path")
    print(f"  {'path':<16} {'→ Running p50':>14} {'p95':>7} {'→ Completed p50':>16} {'p95':>7}")
    stats: dict[str, dict[str, float]] = {}
    for name, runs in rows.items():
        running = [r.running for r in runs]
        completed = [r.completed for r in runs]
        stats[name] = {
            "running_p50": statistics.median(running),
            "running_p95": _p(running, 0.95),
            "completed_p50": statistics.median(completed),
            "completed_p95": _p(completed, 0.95),
        }
        s = stats[name]
        print(
            f"  {name:<16} {s['running_p50']:>13.3f}s {s['running_p95']:>6.3f}s "
            f"{s['completed_p50']:>15.3f}s {s['completed_p95']:>6.3f}s"
        )
    ratio = {k: stats["process worker"][k] / stats["warm runner"][k] for k in stats["warm runner"]}
    print(
        f"  {'ratio':<16} {ratio['running_p50']:>13.1f}x {ratio['running_p95']:>6.1f}x "
        f"{ratio['completed_p50']:>15.1f}x {ratio['completed_p95']:>6.1f}x  (process / warm)"
    )
    not_completed = [r.state for r in warm + process if r.state != "Completed"]
    if not_completed:
        print(f"  runs that did not complete: {Counter(not_completed)}")
    pending = [r.pending for r in process if r.pending is not None]
    if pending:
        print(
            f"  process worker: claimed (Pending) after {statistics.median(pending):.2f}s p50, "
            f"then {statistics.median(r.running - (r.pending or 0) for r in process):.2f}s "
            "to Running (a new Python process)"
        )
    for name, key in (("warm runner", "warm"), ("process worker", "process")):
        cpu = found[key]["cpu"]
        print(
            f"  CPU per run, {name}: Prefect server {cpu['server'] * 1000:.0f} ms, "
            f"worker {cpu['worker'] * 1000:.0f} ms"
        )
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
    return {
        "stats": stats,
        "ratio": ratio,
        "profile": found["warm"]["profile"],
        "cpu": {"warm": found["warm"]["cpu"], "process": found["process"]["cpu"]},
    }
