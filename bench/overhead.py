"""(a) Interpreter overhead: 100-node chain and fan-out, `run_workflow` vs hand-written Prefect.

The hand-written flow is what a Prefect user would write for the same work: one `@task` awaited
100 times (chain) or 100 times at once (fan-out). Both sides run against the same Prefect server
in this process, alternately, for several rounds. The figures are median wall times; the ratio
is the median of the per-round ratios (each pair runs back to back, so a slow phase of the
machine affects both sides of a pair alike). Before each timed run the benchmark pauses, so every
run starts on a server that has finished ingesting the previous run's events (on a 2-core
machine that work otherwise lands on whichever run comes next). Target: ratio <= 1.10.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

from prefect import flow, task
from prefect.cache_policies import NO_CACHE

N = 100
ROUNDS = 15
PAUSE_SECONDS = 1.5


@task(cache_policy=NO_CACHE, persist_result=False)
async def step(value: int) -> int:
    return value + 1


@flow(name="bench-hand-chain", persist_result=False)
async def hand_chain(n: int) -> int:
    value = 0
    for _ in range(n):
        value = await step(value)
    return value


@flow(name="bench-hand-fanout", persist_result=False)
async def hand_fanout(n: int) -> int:
    results = await asyncio.gather(*(step(i) for i in range(n)))
    return sum(results)


def chain_definition(n: int) -> dict[str, Any]:
    nodes: list[dict[str, Any]] = [{"id": "n0", "piece": "core.transform", "input": {"value": 1}}]
    for i in range(1, n):
        value = "{{ nodes.n" + str(i - 1) + ".output + 1 }}"
        nodes.append({"id": f"n{i}", "piece": "core.transform", "input": {"value": value}})
    edges = [{"from": f"n{i - 1}", "to": f"n{i}"} for i in range(1, n)]
    output = "{{ nodes.n" + str(n - 1) + ".output }}"
    return {"format": 1, "id": "bench-chain", "nodes": nodes, "edges": edges, "output": output}


def fanout_definition(n: int) -> dict[str, Any]:
    nodes = [
        {"id": f"n{i}", "piece": "core.transform", "input": {"value": i + 1}} for i in range(n)
    ]
    return {"format": 1, "id": "bench-fanout", "nodes": nodes}


async def _timed(call: Any) -> float:
    await asyncio.sleep(PAUSE_SECONDS)
    started = time.perf_counter()
    await call
    return time.perf_counter() - started


async def measure() -> dict[str, dict[str, float]]:
    from interpreter import arun_workflow

    Start = Callable[[], Awaitable[Any]]
    shapes: dict[str, tuple[Start, Start]] = {
        "chain": (lambda: arun_workflow(chain_definition(N)), lambda: hand_chain(N)),
        "fan-out": (lambda: arun_workflow(fanout_definition(N)), lambda: hand_fanout(N)),
    }
    figures: dict[str, dict[str, float]] = {}
    for shape, (ours, theirs) in shapes.items():
        await ours()  # warm-up: imports, first flow registration
        await theirs()
        ours_times, theirs_times = [], []
        for _ in range(ROUNDS):
            ours_times.append(await _timed(ours()))
            theirs_times.append(await _timed(theirs()))
        a, b = statistics.median(ours_times), statistics.median(theirs_times)
        # The ratio is the median of per-round ratios: each pair ran back to back, so slow
        # phases of the machine affect both sides of a pair alike.
        ratio = statistics.median(x / y for x, y in zip(ours_times, theirs_times, strict=True))
        figures[shape] = {"run_workflow_s": a, "hand_written_s": b, "ratio": ratio}
    return figures


def main() -> dict[str, dict[str, float]]:
    figures = asyncio.run(measure())
    print(f"\n(a) overhead, {N} nodes, median of {ROUNDS} alternating rounds (target <= 1.10)")
    for shape, f in figures.items():
        print(
            f"  {shape:<8} run_workflow {f['run_workflow_s']:.3f}s  hand-written "
            f"{f['hand_written_s']:.3f}s  ratio {f['ratio']:.2f}"
        )
    return figures
