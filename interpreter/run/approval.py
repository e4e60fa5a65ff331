"""Pausing a flow run: for a person's approval (`wait_for_approval`), and on request from
outside the run (`hold_while`, the service's pauseRun) between two nodes.

This is Prefect's own pause-with-input protocol, so a paused run is resumed the standard way —
the Prefect UI's "Resume" form (built from the input schema), `prefect flow-run resume`, or
`prefect.flow_runs.resume_flow_run(flow_run_id, run_input={...})` from any process — and
Prefect's server validates the input against the node's `input_schema` before accepting it.

We drive the protocol ourselves rather than through `pause_flow_run(wait_for_input=Model)` because
the node's schema is plain JSON Schema (no pydantic model to derive it from), the wait must end
when the run is cancelled, and a time-out must leave the flow run `Running` again so the error
edge can proceed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from prefect import State, get_client, get_run_logger
from prefect.context import FlowRunContext
from prefect.input.run_input import keyset_from_paused_state
from prefect.states import Paused, Running
from prefect.utilities.engine import propose_state

from pieces.base import PieceError

DEFAULT_INPUT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "title": "Approval",
    "properties": {
        "approved": {"type": "boolean", "title": "Approved", "default": True},
        "comment": {"type": "string", "title": "Comment", "default": ""},
    },
    "required": ["approved"],
}
"""What an approver sends when the node gives no `input_schema`."""

POLL_SECONDS = 1.0


async def wait_for_approval(
    *,
    node_id: str,
    message: str,
    input_schema: dict[str, Any] | None,
    timeout_seconds: float,
    on_paused: Callable[[], None] = lambda: None,
) -> Any:
    """Pause the current flow run and return the input it is resumed with; `on_paused` is
    called once Prefect holds the run paused (from then on it can be resumed).

    A flow run has one pause at a time: the caller takes approvals in parallel branches of one
    run one after the other.

    Raises:
        PieceError: `ApprovalTimeout` when nobody resumes the run within `timeout_seconds`.
    """
    context = FlowRunContext.get()
    if context is None or context.flow_run is None:
        raise PieceError("core.approval needs a flow run", error_type="ApprovalUnavailable")
    return await _pause(
        context.flow_run.id, node_id, message, input_schema, timeout_seconds, on_paused
    )


async def _pause(
    flow_run_id: uuid.UUID,
    node_id: str,
    message: str,
    input_schema: dict[str, Any] | None,
    timeout_seconds: float,
    on_paused: Callable[[], None],
) -> Any:
    logger = get_run_logger()
    paused: State[Any] = Paused(
        timeout_seconds=math.ceil(timeout_seconds),
        reschedule=False,
        pause_key=f"{node_id}-{uuid.uuid4().hex[:8]}",
    )
    keyset = keyset_from_paused_state(paused)
    paused.state_details.run_input_keyset = {str(k): v for k, v in keyset.items()}
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_seconds
    async with get_client() as client:
        state = await propose_state(client=client, state=paused, flow_run_id=flow_run_id)
        if not state.is_paused():
            raise PieceError(
                f"the flow run could not be paused (it is {state.type.value})",
                error_type="ApprovalUnavailable",
            )
        schema = input_schema or DEFAULT_INPUT_SCHEMA
        await client.create_flow_run_input(flow_run_id, keyset["schema"], json.dumps(schema))
        await client.create_flow_run_input(flow_run_id, keyset["description"], message)
        on_paused()
        logger.info(
            "node %r waits for approval: %s (resume flow run %s with input, within %gs)",
            node_id,
            message,
            flow_run_id,
            timeout_seconds,
        )
        while True:
            flow_run = await client.read_flow_run(flow_run_id)
            if flow_run.state is not None and flow_run.state.is_running():
                response = await client.read_flow_run_input(flow_run_id, keyset["response"])
                logger.info("node %r was approved", node_id)
                return json.loads(response)
            remaining = deadline - loop.time()
            if remaining <= 0:
                await propose_state(client=client, state=Running(), flow_run_id=flow_run_id)
                raise PieceError(
                    f"nobody resumed the run within timeout_seconds={timeout_seconds:g}",
                    error_type="ApprovalTimeout",
                    retryable=False,
                )
            await asyncio.sleep(min(POLL_SECONDS, remaining))


PAUSE_REQUEST_POLL_SECONDS = 0.5
HELD_PAUSE_TIMEOUT_SECONDS = 7 * 24 * 3600
"""How long Prefect is told a requested pause may last (it ends only when resumed)."""


async def hold_while(
    flow_run_id: uuid.UUID,
    still_paused: Callable[[], Awaitable[bool]],
    stopped: asyncio.Event,
) -> None:
    """Show the flow run as Paused in Prefect and wait until `still_paused()` says no (checked
    every `PAUSE_REQUEST_POLL_SECONDS`) or the run is stopped; then set it Running again.

    No node runs meanwhile: the engine calls this between nodes.
    """
    paused: State[Any] = Paused(
        timeout_seconds=HELD_PAUSE_TIMEOUT_SECONDS, reschedule=False, pause_key="altlas-pause"
    )
    async with get_client() as client:
        await propose_state(client=client, state=paused, flow_run_id=flow_run_id)
        get_run_logger().info("the run is paused; it goes on when it is resumed")
        try:
            while not stopped.is_set() and await still_paused():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stopped.wait(), timeout=PAUSE_REQUEST_POLL_SECONDS)
        finally:
            if not stopped.is_set():
                await propose_state(client=client, state=Running(), flow_run_id=flow_run_id)
                get_run_logger().info("the run was resumed")
