"""Retries, time-outs, cancellation and concurrency: the run-time policies of the spec."""

from __future__ import annotations

import asyncio
import random
import threading
import time
from typing import Any

import pytest

from interpreter import arun_workflow
from interpreter.definition.model import RetryPolicy
from tests.support.definitions import edge, node, workflow
from tests.support.service import RunningService

pytestmark = pytest.mark.usefixtures("engine")


def flaky(service: RunningService, node_id: str, path: str, **fields: Any) -> dict[str, Any]:
    """An `http.request` node calling the test service's `/flaky/<path>` (see its `fail=`)."""
    url = f"{service.url}/flaky/{path}"
    return node(node_id, "http.request", input={"method": "GET", "url": url}, **fields)


def test_retry_policy_delays_fixed_exponential_capped_and_jittered() -> None:
    assert RetryPolicy(max_attempts=1).delays() == []
    assert RetryPolicy(max_attempts=4, delay_seconds=2).delays() == [2, 2, 2]
    exponential = RetryPolicy(max_attempts=5, delay_seconds=1, backoff="exponential")
    assert exponential.delays() == [1, 2, 4, 8]
    capped = RetryPolicy(
        max_attempts=5, delay_seconds=1, backoff="exponential", max_delay_seconds=3
    )
    assert capped.delays() == [1, 2, 3, 3]
    jittered = RetryPolicy(max_attempts=200, delay_seconds=10, jitter=0.2).delays(random.Random(4))
    assert all(8 <= d <= 12 for d in jittered)
    assert len(set(jittered)) > 100  # really random, not a constant
    jittered_capped = RetryPolicy(
        max_attempts=50, delay_seconds=10, jitter=0.5, max_delay_seconds=11
    ).delays(random.Random(1))
    assert max(jittered_capped) <= 11


async def test_retries_until_success_counting_attempts(service: RunningService) -> None:
    started = time.monotonic()
    result = await arun_workflow(
        workflow(
            [
                flaky(
                    service,
                    "fetch",
                    "retry-ok?fail=2",
                    retry={"max_attempts": 4, "delay_seconds": 0.2, "backoff": "exponential"},
                )
            ],
            output="{{ nodes.fetch.output.body.attempt }}",
        )
    )
    assert result.state == "completed"
    assert result.output == 3
    assert result.nodes["fetch"].attempts == 3
    assert service.state.calls["retry-ok"] == 3
    assert time.monotonic() - started >= 0.2 + 0.4  # the exponential waits happened


async def test_retries_exhausted_fail_with_the_last_error(service: RunningService) -> None:
    result = await arun_workflow(
        workflow(
            [
                flaky(
                    service,
                    "fetch",
                    "always?fail=99",
                    retry={"max_attempts": 3, "delay_seconds": 0},
                )
            ]
        )
    )
    fetch = result.nodes["fetch"]
    assert (result.state, fetch.status, fetch.attempts) == ("failed", "failed", 3)
    assert fetch.error is not None
    assert fetch.error["type"] == "HttpStatusError"
    assert fetch.error["attempts"] == 3


async def test_non_retryable_errors_are_not_retried(service: RunningService) -> None:
    result = await arun_workflow(
        workflow(
            [
                flaky(
                    service,
                    "fetch",
                    "notfound?fail=99&status=404",
                    retry={"max_attempts": 5, "delay_seconds": 0},
                )
            ]
        )
    )
    assert result.nodes["fetch"].attempts == 1
    assert service.state.calls["notfound"] == 1


async def test_retry_after_is_honoured_within_the_retry_policy(service: RunningService) -> None:
    started = time.monotonic()
    result = await arun_workflow(
        workflow(
            [
                flaky(
                    service,
                    "fetch",
                    "busy?fail=1&status=503&retry_after=1",
                    retry={"max_attempts": 2, "delay_seconds": 0.05},
                )
            ]
        )
    )
    assert result.nodes["fetch"].attempts == 2
    assert result.state == "completed"
    assert time.monotonic() - started >= 1.0


async def test_defaults_retry_applies_to_nodes_without_their_own(service: RunningService) -> None:
    result = await arun_workflow(
        workflow(
            [
                flaky(service, "a", "dflt-a?fail=1"),
                flaky(service, "b", "dflt-b?fail=1", retry={"max_attempts": 1}),
            ],
            defaults={"retry": {"max_attempts": 2, "delay_seconds": 0}},
        )
    )
    assert result.nodes["a"].attempts == 2
    assert result.nodes["a"].status == "completed"
    assert result.nodes["b"].attempts == 1
    assert result.nodes["b"].status == "failed"


async def test_attempt_timeout_stops_the_work_and_is_retried() -> None:
    started = time.monotonic()
    result = await arun_workflow(
        workflow(
            [
                node(
                    "slow",
                    "core.delay",
                    input={"seconds": 30},
                    timeout_seconds=0.3,
                    retry={"max_attempts": 2, "delay_seconds": 0},
                )
            ]
        )
    )
    slow = result.nodes["slow"]
    assert (slow.status, slow.attempts) == ("failed", 2)
    assert slow.error is not None
    assert slow.error["type"] == "Timeout"
    assert time.monotonic() - started < 30  # the 30 s sleep was really interrupted


async def test_run_timeout_stops_running_nodes_and_reports_timed_out() -> None:
    started = time.monotonic()
    result = await arun_workflow(
        workflow(
            [
                node("quick", value=1),
                node("slow", "core.delay", input={"seconds": 30}),
                node("after", value="never"),
            ],
            [edge("slow", "after")],
            timeout_seconds=1,
        )
    )
    assert result.state == "timed_out"
    assert result.error is not None
    assert result.error["type"] == "Timeout"
    assert result.nodes["quick"].status == "completed"
    assert result.nodes["slow"].status == "cancelled"
    assert result.nodes["after"].status == "cancelled"
    assert time.monotonic() - started < 30


async def test_run_timeout_cuts_a_retry_wait_short(service: RunningService) -> None:
    """A node waiting to retry is stopped by the run's deadline: no second attempt, no waiting
    out the delay (found by an independent check against the spec)."""
    started = time.monotonic()
    result = await arun_workflow(
        workflow(
            [
                flaky(
                    service,
                    "fetch",
                    "deadline?fail=5",
                    retry={"max_attempts": 3, "delay_seconds": 30},
                )
            ],
            timeout_seconds=1,
        )
    )
    assert result.state == "timed_out"
    assert result.nodes["fetch"].status == "cancelled"
    assert result.nodes["fetch"].attempts == 1
    assert service.state.calls["deadline"] == 1
    assert time.monotonic() - started < 15


async def test_independent_paths_run_concurrently() -> None:
    result = await arun_workflow(
        workflow([node(f"p{i}", "core.delay", input={"seconds": 1}) for i in range(5)])
    )
    nodes = list(result.nodes.values())
    latest_start = max(n.started_at for n in nodes)  # type: ignore[type-var]
    earliest_end = min(n.finished_at for n in nodes)  # type: ignore[type-var]
    assert latest_start < earliest_end  # all five were sleeping at the same moment


async def test_cancelling_the_flow_run_in_prefect_stops_the_run(engine: str) -> None:
    from prefect import get_client
    from prefect.client.schemas.filters import (
        FlowFilter,
        FlowFilterName,
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType
    from prefect.states import Cancelling

    definition = workflow(
        [node("slow", "core.delay", input={"seconds": 60}), node("after", value=1)],
        [edge("slow", "after")],
        id="cancel-me",
    )
    run = asyncio.ensure_future(arun_workflow(definition))
    started = time.monotonic()
    async with get_client() as client:
        flow_run = None
        while flow_run is None and time.monotonic() - started < 30:
            await asyncio.sleep(0.3)
            runs = await client.read_flow_runs(
                flow_filter=FlowFilter(name=FlowFilterName(any_=["cancel-me"])),
                flow_run_filter=FlowRunFilter(
                    state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.RUNNING]))
                ),
            )
            flow_run = runs[0] if runs else None
        assert flow_run is not None
        await client.set_flow_run_state(flow_run.id, Cancelling(), force=True)
    result = await asyncio.wait_for(run, timeout=45)
    assert result.state == "cancelled"
    assert result.nodes["slow"].status == "cancelled"
    assert result.nodes["after"].status == "cancelled"
    assert time.monotonic() - started < 60


def test_concurrency_limit_makes_runs_wait_their_turn(engine: str) -> None:
    from interpreter import run_workflow

    definition = workflow(
        [node("hold", "core.delay", input={"seconds": 1.5})],
        id="one-at-a-time",
        concurrency={"limit": 1},
    )
    intervals: list[tuple[float, float]] = []

    def one_run() -> None:
        result = run_workflow(definition)
        hold = result.nodes["hold"]
        assert hold.started_at is not None
        assert hold.finished_at is not None
        intervals.append((hold.started_at.timestamp(), hold.finished_at.timestamp()))

    threads = [threading.Thread(target=one_run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert len(intervals) == 2
    first, second = sorted(intervals)
    assert second[0] >= first[1] - 0.05  # the second run's node started after the first ended
