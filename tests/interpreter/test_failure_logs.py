"""What a run's log says about an ordinary node failure: one clear line, no engine traceback.

Read back from Prefect, as the Prefect UI shows it, and from a CLI run's console.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest

from interpreter import arun_workflow
from tests.support.cli import run_cli
from tests.support.definitions import edge, node, workflow
from tests.support.service import RunningService

pytestmark = pytest.mark.usefixtures("engine")


async def run_logs(flow_run_id: str) -> list[tuple[int, str]]:
    """Every (level, message) Prefect stored for a flow run and its task runs, in order."""
    import asyncio

    from prefect import get_client
    from prefect._internal.concurrency.services import QueueService
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
    from prefect.client.schemas.sorting import LogSort

    await asyncio.get_running_loop().run_in_executor(None, QueueService.drain_all, 10)
    async with get_client() as client:
        logs = await client.read_logs(
            log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[UUID(flow_run_id)])),
            sort=LogSort.TIMESTAMP_ASC,
        )
    return [(log.level, log.message) for log in logs]


def _failures(service: RunningService) -> dict[str, tuple[dict[str, Any], str]]:
    """Workflows that each fail one node in an ordinary way, with the cause its line names."""
    flaky = f"{service.url}/flaky/logs-retries?fail=5"
    return {
        "missing secret": (
            workflow([node("greet", value="{{ secrets.nowhere }}")]),
            "secret 'nowhere' is not defined",
        ),
        "when on a missing key": (
            workflow(
                [node("a", value={"x": 1}), node("b", value=2)],
                [edge("a", "b", when="{{ output.missing.deeper }}")],
            ),
            "'missing'",
        ),
        "failing map item": (
            workflow(
                [
                    node(
                        "loop",
                        "core.map",
                        input={
                            "items": [1, 0],
                            "piece": "core.transform",
                            "input": {"value": "{{ 10 // item }}"},
                        },
                    )
                ]
            ),
            "item 1 of 2",
        ),
        "retries used up": (
            workflow(
                [
                    node(
                        "fetch",
                        "http.request",
                        input={"method": "GET", "url": flaky},
                        retry={"max_attempts": 2, "delay_seconds": 0},
                    )
                ]
            ),
            "500",
        ),
        "node time-out": (
            workflow([node("wait", "core.delay", input={"seconds": 5}, timeout_seconds=0.2)]),
            "timeout_seconds=0.2",
        ),
        "missing parameter": (
            workflow([node("greet", value="{{ params.name.first }}")]),
            "name",
        ),
    }


@pytest.mark.parametrize(
    "case",
    [
        "missing secret",
        "when on a missing key",
        "failing map item",
        "retries used up",
        "node time-out",
        "missing parameter",
    ],
)
async def test_an_ordinary_failure_is_one_line_without_a_traceback(
    case: str, service: RunningService
) -> None:
    definition, cause = _failures(service)[case]
    result = await arun_workflow(definition)
    assert result.state == "failed", result
    failed = [n for n, r in result.nodes.items() if r.status == "failed"]
    assert len(failed) == 1, result.nodes
    logs = await run_logs(result.flow_run_id)
    assert not any("Traceback" in message for _, message in logs), logs
    assert not any("NodeFailure" in message for _, message in logs), logs
    errors = [message for level, message in logs if level >= 40]
    node_lines = [m for m in errors if m.startswith(f"node {failed[0]!r} failed")]
    assert len(node_lines) == 1, errors
    assert cause in node_lines[0], node_lines[0]
    # Besides the node's line, only Prefect's end-of-run lines (task run and flow run: "Finished
    # in state Failed(...)") are errors; they name the node's error type, not an engine class.
    others = [m for m in errors if m not in node_lines]
    assert all(m.startswith("Finished in state Failed") for m in others), errors
    error = result.nodes[failed[0]].error
    assert error is not None
    assert all(error["type"] in m for m in others), (error["type"], errors)


async def test_a_retried_failure_says_why_at_info_and_fails_once(
    service: RunningService,
) -> None:
    url = f"{service.url}/flaky/logs-retried?fail=5"
    definition = workflow(
        [
            node(
                "fetch",
                "http.request",
                input={"method": "GET", "url": url},
                retry={"max_attempts": 3, "delay_seconds": 0},
            )
        ]
    )
    result = await arun_workflow(definition)
    assert result.nodes["fetch"].attempts == 3
    logs = await run_logs(result.flow_run_id)
    retries = [m for level, m in logs if level == 20 and "retrying in" in m]
    assert [m.split(":")[1].strip() for m in retries] == [
        "attempt 1 of 3 failed",
        "attempt 2 of 3 failed",
    ], retries
    assert all("HttpStatusError" in m for m in retries), retries
    assert [m for level, m in logs if level >= 40 and m.startswith("node")] == [
        next(m for m in (m for _, m in logs) if m.startswith("node 'fetch' failed after 3"))
    ]


def test_the_console_shows_no_engine_traceback(tmp_path: Path) -> None:
    definition = workflow([node("greet", value="{{ secrets.nowhere }}")])
    path = tmp_path / "failing.json"
    path.write_text(json.dumps(definition))
    done = run_cli("run", str(path), env=os.environ, timeout=120)
    assert done.returncode == 1, done.stderr
    assert json.loads(done.stdout)["state"] == "failed"
    console = done.stdout + done.stderr
    assert "Traceback" not in console, console
    assert "interpreter/run" not in console, console
    assert console.count("node 'greet' failed: SecretNotFound: secret 'nowhere'") == 1, console
