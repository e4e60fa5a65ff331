"""`code.python` inside real workflow runs: data in and out, logs in Prefect, errors, time-outs."""

from __future__ import annotations

import pytest

from interpreter import arun_workflow
from tests.pieces.code.conftest import sandbox_processes
from tests.support.definitions import edge, node, workflow
from tests.support.prefect import flow_run_logs

pytestmark = [pytest.mark.usefixtures("prefect_server"), pytest.mark.slow]

SUMMARISE = """
def main(inputs):
    orders = inputs["orders"]
    print(f"summarising {len(orders)} orders for {inputs['who']}")
    return {"total": sum(o["amount"] for o in orders), "count": len(orders)}
"""


async def test_a_code_node_in_a_workflow() -> None:
    definition = workflow(
        [
            node("orders", value=[{"amount": 5}, {"amount": 7.5}]),
            node(
                "summarise",
                "code.python",
                input={
                    "code": SUMMARISE,
                    "inputs": {"orders": "{{ nodes.orders.output }}", "who": "{{ params.who }}"},
                    "timeout_seconds": 10,
                },
            ),
            node(
                "report",
                value="{{ nodes.summarise.output.total }} in {{ nodes.summarise.output.count }}",
            ),
        ],
        [edge("orders", "summarise"), edge("summarise", "report")],
        output="{{ nodes.report.output }}",
    )
    result = await arun_workflow(definition, {"who": "sales"})
    assert result.state == "completed", result.nodes
    assert result.nodes["summarise"].output == {"total": 12.5, "count": 2}
    assert result.output == "12.5 in 2"
    assert "summarising 2 orders for sales" in await flow_run_logs(result.flow_run_id)


async def test_a_failing_code_node_takes_its_error_edge() -> None:
    definition = workflow(
        [
            node(
                "compute",
                "code.python",
                input={"code": "def main(inputs):\n    return 1 / 0\n"},
                retry={"max_attempts": 3},
            ),
            node("handle", value="{{ error.type }}: {{ error.message.splitlines()[0] }}"),
        ],
        [edge("compute", "handle", on="error")],
        output="{{ nodes.handle.output }}",
    )
    result = await arun_workflow(definition)
    assert result.state == "completed"
    assert result.output == "CodeError: ZeroDivisionError: division by zero"
    assert result.nodes["compute"].attempts == 1  # not retryable


async def test_a_node_time_out_stops_the_sandbox() -> None:
    definition = workflow(
        [
            node(
                "hang",
                "code.python",
                input={"code": "import time\ndef main(inputs):\n    time.sleep(3600)\n"},
                timeout_seconds=1,
            )
        ]
    )
    result = await arun_workflow(definition)
    assert result.state == "failed"
    assert result.nodes["hang"].status == "failed"
    assert sandbox_processes() == []
