"""Starting a flow run of a workflow in this process: `call_flow`, with its tags and trigger.

Used by `run_workflow` (a top-level ad-hoc run) and by `core.subworkflow` (a subflow run).
"""

from __future__ import annotations

from typing import Any

from prefect import State
from prefect.context import AsyncClientContext, FlowRunContext, TagsContext
from prefect.flow_engine import run_flow_async
from prefect.flows import Flow
from prefect.logging import get_logger
from prefect.states import Pending
from prefect.utilities.urls import url_for

from pieces.triggers.event import trigger_scope

MANUAL_TRIGGER_TYPE = "manual"


def run_tags(*, tenant: str, workflow_id: str, version: str) -> list[str]:
    """The tags of a workflow's flow runs (and deployments)."""
    return [f"tenant:{tenant}", f"workflow:{workflow_id}", f"version:{version}"]


def manual_trigger(payload: Any = None) -> dict[str, Any]:
    """The `trigger` scope of a run started by hand or through the Python API."""
    return trigger_scope(
        trigger_type=MANUAL_TRIGGER_TYPE,
        trigger_id=None,
        payload=payload if payload is not None else {},
    )


async def call_flow(
    flow: Flow[..., Any], *, run_name: str | None = None, **parameters: Any
) -> State:
    """Run `flow` in this process (a subflow when inside a run) and return its final state.

    A top-level run given `run_name` is created under that name, so that even Prefect's first
    log line ("Beginning flow run ...") names the workflow; the request this costs is the one
    renaming the run would.
    """
    if run_name is None or FlowRunContext.get() is not None:
        call: Any = flow
        state: State = await call(**parameters, return_state=True)
        return state
    async with AsyncClientContext.get_or_create() as client_context:  # the engine reuses it
        flow_run = await client_context.client.create_flow_run(
            flow,
            name=run_name,
            parameters=flow.serialize_parameters(parameters),
            tags=TagsContext.get().current_tags,
            state=Pending(),
        )
        if url := url_for(flow_run):
            get_logger("engine").info("View at %s", url, extra={"send_to_api": False})
        result = await run_flow_async(
            flow, flow_run=flow_run, parameters=parameters, return_type="state"
        )
    if not isinstance(result, State):
        raise TypeError(f"Prefect returned {type(result).__name__}, not a flow run state")
    return result
