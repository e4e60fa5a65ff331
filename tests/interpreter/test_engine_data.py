"""Data through a run: secrets and their redaction, core.map, sub-workflows, approvals."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from interpreter import arun_workflow
from tests.support.definitions import edge, node, workflow
from tests.support.prefect import flow_run_logs
from tests.support.service import RunningService

pytestmark = pytest.mark.usefixtures("engine")

SECRET = "s3cr3t-value-42"


# --- secrets ---------------------------------------------------------------------------------


async def test_secrets_flow_unchanged_but_are_redacted_everywhere_shown(
    service: RunningService,
) -> None:
    result = await arun_workflow(
        workflow(
            [
                node("compare", value="{{ secrets.api_key == 's3cr3t-value-42' }}"),
                node(
                    "leak",
                    value={
                        "token": "{{ secrets.api_key }}",
                        "len": "{{ secrets.api_key | length }}",
                    },
                ),
                node(
                    "call",
                    "http.request",
                    input={
                        "method": "GET",
                        "url": f"{service.url}/echo",
                        "headers": {"Authorization": "Bearer {{ secrets.api_key }}"},
                    },
                ),
                node("fail", value="{{ params.nope }} {{ secrets.api_key }}"),
                node("fail_loud", value="{{ params[secrets.api_key] }}", on_error="continue"),
            ],
            output={"leak": "{{ nodes.leak.output }}", "echo": "{{ nodes.call.output.body }}"},
            id="secrets-check",
        ),
        secrets={"api_key": SECRET},
    )
    # Values flowed unchanged between nodes and to the service...
    assert result.nodes["compare"].output is True
    assert result.nodes["leak"].output == {"token": "***", "len": len(SECRET)}
    assert service.state.headers[-1]["authorization"] == f"Bearer {SECRET}"
    # ...but nothing the engine reports shows them.
    shown = json.dumps(result.to_dict())
    assert SECRET not in shown
    assert result.nodes["call"].output["body"] == {"authorization": "Bearer ***"}
    fail_loud = result.nodes["fail_loud"].error
    assert fail_loud is not None
    assert "***" in fail_loud["message"]  # the failure message carried the value: hidden
    logs = await flow_run_logs(result.flow_run_id)
    assert logs
    assert not [line for line in logs if SECRET in line]


async def test_secrets_come_from_the_environment_for_ad_hoc_runs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ALTLAS_SECRET_SHOP_TOKEN", "from-the-env")
    result = await arun_workflow(
        workflow(
            [node("a", value="{{ secrets.shop_token == 'from-the-env' }}")],
            output="{{ nodes.a.output }}",
        )
    )
    assert result.output is True


async def test_a_missing_secret_fails_the_node_that_uses_it_and_says_how_to_fix() -> None:
    result = await arun_workflow(
        workflow(
            [
                node("uses", value="{{ secrets.not_defined }}", retry={"max_attempts": 3}),
                node("other", value=1),
            ]
        )
    )
    uses = result.nodes["uses"]
    assert (uses.status, uses.attempts) == ("failed", 1)  # not worth retrying
    assert uses.error is not None
    assert uses.error["type"] == "SecretNotFound"
    assert "ALTLAS_SECRET_NOT_DEFINED" in uses.error["message"]
    assert result.nodes["other"].status == "completed"


# --- core.map --------------------------------------------------------------------------------


async def test_map_piece_per_item_keeps_order_and_bounds_concurrency(
    service: RunningService,
) -> None:
    before = service.state.max_in_flight
    service.state.max_in_flight = 0
    result = await arun_workflow(
        workflow(
            [
                node(
                    "fan",
                    "core.map",
                    input={
                        "items": [0.6, 0.1, 0.4, 0.2, 0.3, 0.05],
                        "max_concurrency": 2,
                        "piece": "http.request",
                        "input": {
                            "method": "GET",
                            "url": f"{service.url}/slow",
                            "query": {"seconds": "{{ item }}", "item": "{{ index }}"},
                        },
                    },
                )
            ],
            output="{{ nodes.fan.output | map(attribute='body') | map(attribute='item') | list }}",
        )
    )
    assert result.state == "completed", result.error
    assert result.output == ["0", "1", "2", "3", "4", "5"]
    assert service.state.max_in_flight == 2
    service.state.max_in_flight = max(before, 2)


async def test_map_sub_graph_per_item_with_its_own_nodes() -> None:
    result = await arun_workflow(
        workflow(
            [
                node("seed", value=[3, 1, 2]),
                node(
                    "each",
                    "core.map",
                    input={
                        "items": "{{ nodes.seed.output }}",
                        "workflow": {
                            "nodes": [
                                {
                                    "id": "double",
                                    "piece": "core.transform",
                                    "input": {"value": "{{ item * 2 }}"},
                                },
                                {
                                    "id": "small",
                                    "piece": "core.transform",
                                    "input": {"value": "small"},
                                },
                                {
                                    "id": "big",
                                    "piece": "core.transform",
                                    "input": {"value": "big {{ index }}"},
                                },
                            ],
                            "edges": [
                                {"from": "double", "to": "small", "when": "{{ output < 4 }}"},
                                {"from": "double", "to": "big", "when": "{{ output >= 4 }}"},
                            ],
                            "output": "{{ nodes.double.output }}:"
                            "{{ nodes.small.output or nodes.big.output }}",
                        },
                    },
                ),
            ],
            [edge("seed", "each")],
            output="{{ nodes.each.output }}",
        )
    )
    assert result.output == ["6:big 0", "2:small", "4:big 2"]


async def test_a_failing_map_item_fails_the_map_node_naming_the_item() -> None:
    result = await arun_workflow(
        workflow(
            [
                node(
                    "each",
                    "core.map",
                    input={
                        "items": [1, 0, 2],
                        "piece": "core.transform",
                        "input": {"value": "{{ 10 // item }}"},
                    },
                ),
                node("handler", value="{{ error.message }}"),
            ],
            [edge("each", "handler", on="error")],
            output="{{ nodes.handler.output }}",
        )
    )
    assert result.nodes["each"].status == "failed"
    assert "each[1]" in result.output


async def test_map_of_an_empty_list_is_an_empty_list() -> None:
    result = await arun_workflow(
        workflow(
            [
                node(
                    "each",
                    "core.map",
                    input={"items": [], "piece": "core.delay", "input": {"seconds": 1}},
                )
            ],
            output="{{ nodes.each.output }}",
        )
    )
    assert result.output == []


# --- core.subworkflow ------------------------------------------------------------------------


def write(folder: Path, definition: dict[str, Any]) -> Path:
    path = folder / f"{definition['id']}.json"
    path.write_text(json.dumps(definition))
    return path


async def test_subworkflow_runs_the_child_as_a_prefect_subflow(tmp_path: Path) -> None:
    from prefect import get_client

    write(
        tmp_path,
        workflow(
            [node("greet", value="hi {{ params.who }}")],
            id="child-greeter",
            parameters={
                "type": "object",
                "properties": {"who": {"type": "string", "default": "x"}},
            },
            output="{{ nodes.greet.output }}",
        ),
    )
    parent = write(
        tmp_path,
        workflow(
            [
                node(
                    "call",
                    "core.subworkflow",
                    input={"workflow_id": "child-greeter", "parameters": {"who": "ada"}},
                )
            ],
            id="parent-caller",
            output="{{ nodes.call.output }}",
        ),
    )
    result = await arun_workflow(parent)
    assert result.state == "completed", result.error
    assert result.output == "hi ada"
    async with get_client() as client:
        from prefect.client.schemas.filters import FlowFilter, FlowFilterName

        children = await client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=["child-greeter"]))
        )
    assert len(children) == 1
    assert children[0].parent_task_run_id is not None  # a subflow of the parent's task run
    assert "workflow:child-greeter" in children[0].tags


async def test_subworkflow_failure_and_missing_child_fail_the_node(tmp_path: Path) -> None:
    write(tmp_path, workflow([node("bad", value="{{ params.nope }}")], id="child-fails"))
    parent = write(
        tmp_path,
        workflow(
            [
                node("call", "core.subworkflow", input={"workflow_id": "child-fails"}),
                node("missing", "core.subworkflow", input={"workflow_id": "no-such-workflow"}),
            ],
            id="parent-of-failure",
        ),
    )
    result = await arun_workflow(parent)
    assert result.nodes["call"].error["type"] == "SubworkflowFailed"  # type: ignore[index]
    assert result.nodes["missing"].error["type"] == "WorkflowNotFound"  # type: ignore[index]


async def test_recursive_subworkflows_stop_at_the_depth_limit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from interpreter.settings import get_engine_settings

    monkeypatch.setenv("ALTLAS_MAX_SUBWORKFLOW_DEPTH", "2")
    get_engine_settings.cache_clear()
    try:
        path = write(
            tmp_path,
            workflow(
                [node("again", "core.subworkflow", input={"workflow_id": "forever"})], id="forever"
            ),
        )
        result = await arun_workflow(path)
    finally:
        get_engine_settings.cache_clear()
    assert result.state == "failed"
    assert "SubworkflowDepthExceeded" in json.dumps(result.to_dict())


# --- core.approval ---------------------------------------------------------------------------

RESUME_SCRIPT = """
import sys, time
from uuid import UUID
from prefect import get_client
from prefect.flow_runs import resume_flow_run
from prefect.client.schemas.filters import (
    FlowFilter, FlowFilterName, FlowRunFilter, FlowRunFilterState, FlowRunFilterStateType,
)
from prefect.client.schemas.objects import StateType
import json

name, payload = sys.argv[1], json.loads(sys.argv[2])
with get_client(sync_client=True) as client:
    for _ in range(300):
        runs = client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=[name])),
            flow_run_filter=FlowRunFilter(state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.PAUSED]))),
        )
        if runs:
            break
        time.sleep(0.2)
    else:
        sys.exit("never paused")
outcome = resume_flow_run(runs[0].id, run_input=payload)
print(outcome.status.value if hasattr(outcome, "status") else outcome)
"""


def resume_from_another_process(flow_name: str, payload: dict[str, Any]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", RESUME_SCRIPT, flow_name, json.dumps(payload)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


async def test_approval_pauses_until_resumed_with_input_from_another_process() -> None:
    schema = {
        "type": "object",
        "properties": {
            "approved": {"type": "boolean"},
            "amount": {"type": "integer", "maximum": 500},
        },
        "required": ["approved", "amount"],
    }
    resumer = resume_from_another_process("needs-approval", {"approved": True, "amount": 120})
    result = await arun_workflow(
        workflow(
            [
                node(
                    "ask",
                    "core.approval",
                    input={"message": "Ship it?", "input_schema": schema, "timeout_seconds": 60},
                ),
                node(
                    "after",
                    value="approved={{ nodes.ask.output.approved }} "
                    "amount={{ nodes.ask.output.amount }}",
                ),
            ],
            [edge("ask", "after")],
            id="needs-approval",
            output="{{ nodes.after.output }}",
        )
    )
    _out, err = resumer.communicate(timeout=60)
    assert resumer.returncode == 0, err
    assert result.state == "completed", result.error
    assert result.output == "approved=True amount=120"


async def test_approval_time_out_takes_the_error_edge() -> None:
    started = time.monotonic()
    result = await arun_workflow(
        workflow(
            [
                node("ask", "core.approval", input={"message": "Anyone?", "timeout_seconds": 1.5}),
                node("escalate", value="{{ error.type }}"),
            ],
            [edge("ask", "escalate", on="error")],
            output="{{ nodes.escalate.output }}",
        )
    )
    assert result.state == "completed"
    assert result.output == "ApprovalTimeout"
    assert time.monotonic() - started >= 1.5
