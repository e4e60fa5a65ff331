"""A successful `altlas-flows run` ends quietly, and nothing it recorded is lost on the way out.

Prefect sends a run's events from a background worker whose websocket takes longer to open than
a small run takes; they are still queued when the process ends. The CLI delivers them (and the
summary artifact, whose creation emits one more event) before Prefect's exit hooks stop the
worker, which would otherwise log `EventsWorker - Still processing items: N items remaining...`.
"""

from __future__ import annotations

import json
import os
import re
import time
from typing import Any
from uuid import UUID

import pytest

from tests.support.cli import ROOT, run_cli

CHAIN = ROOT / "definitions" / "examples" / "chain.json"


def events_of(flow_run_id: str) -> list[str]:
    from prefect import get_client
    from prefect.events.filters import EventAnyResourceFilter, EventFilter

    with get_client(sync_client=True) as client:
        page: Any = client.read_events(
            filter=EventFilter(
                any_resource=EventAnyResourceFilter(id=[f"prefect.flow-run.{flow_run_id}"])
            ),
            limit=50,
        )
    return [event.event for event in page.events]


def log_messages(flow_run_id: str) -> list[str]:
    from prefect import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

    with get_client(sync_client=True) as client:
        logs = client.read_logs(
            log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[UUID(flow_run_id)]))
        )
    return [log.message for log in logs]


@pytest.mark.parametrize("summary_artifact", ["true", "false"])
def test_a_successful_cli_run_prints_no_warning_and_delivers_its_events_and_logs(
    prefect_server: str, summary_artifact: str
) -> None:
    env = {**os.environ, "ALTLAS_SUMMARY_ARTIFACT": summary_artifact}
    done = run_cli("run", str(CHAIN), env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    output = done.stdout + done.stderr
    assert "Still processing items" not in output, output
    assert not re.search(r"\bWARNING\b", output), output
    result = json.loads(done.stdout)
    nodes = len(result["nodes"])
    expected = {"prefect.task-run.Completed": nodes}
    if summary_artifact == "true":  # emitted last, as the process exits
        expected["prefect.artifact.created"] = 1
    deadline = time.monotonic() + 30  # the server persists events in batches
    while True:
        events = events_of(result["flow_run_id"])
        if all(events.count(name) == count for name, count in expected.items()):
            break
        assert time.monotonic() < deadline, f"events missing: {sorted(events)}"
        time.sleep(1)
    assert "Finished in state Completed()" in log_messages(result["flow_run_id"])
