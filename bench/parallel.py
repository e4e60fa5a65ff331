"""(c) Ten parallel 1-second `core.delay` nodes: wall time, against the sequential sum.

The baseline is the sequential sum (10 s), i.e. what an engine that runs branches one after
another (n8n) takes; a hand-written Prefect flow with ten concurrent async tasks is measured too.
Target: under 1.5 s wall.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from typing import Any

from prefect import flow, task
from prefect.cache_policies import NO_CACHE

WIDTH, SECONDS = 10, 1.0
ROUNDS = 3
PAUSE_SECONDS = 1.5


@task(cache_policy=NO_CACHE, persist_result=False)
async def sleep_task(seconds: float) -> float:
    await asyncio.sleep(seconds)
    return seconds


@flow(name="bench-hand-parallel", persist_result=False)
async def hand_parallel() -> float:
    return sum(await asyncio.gather(*(sleep_task(SECONDS) for _ in range(WIDTH))))


def definition() -> dict[str, Any]:
    nodes = [
        {"id": f"d{i}", "piece": "core.delay", "input": {"seconds": SECONDS}} for i in range(WIDTH)
    ]
    return {"format": 1, "id": "bench-parallel", "nodes": nodes}


async def measure() -> dict[str, float]:
    from interpreter import arun_workflow

    await arun_workflow(definition())  # warm-up
    await hand_parallel()
    ours_times, theirs_times = [], []
    for _ in range(ROUNDS):
        await asyncio.sleep(PAUSE_SECONDS)
        started = time.perf_counter()
        result = await arun_workflow(definition())
        ours_times.append(time.perf_counter() - started)
        assert result.state == "completed"
        await asyncio.sleep(PAUSE_SECONDS)
        started = time.perf_counter()
        await hand_parallel()
        theirs_times.append(time.perf_counter() - started)
    ours, theirs = statistics.median(ours_times), statistics.median(theirs_times)
    return {"run_workflow_s": ours, "hand_written_s": theirs, "sequential_s": WIDTH * SECONDS}


def main() -> dict[str, float]:
    f = asyncio.run(measure())
    print(f"\n(c) {WIDTH} parallel {SECONDS:g}-second delays, median of {ROUNDS} (target: < 1.5 s)")
    print(
        f"  run_workflow {f['run_workflow_s']:.2f}s  hand-written Prefect "
        f"{f['hand_written_s']:.2f}s  sequential {f['sequential_s']:.0f}s  ratio to sequential "
        f"{f['run_workflow_s'] / f['sequential_s']:.2f}"
    )
    return f
