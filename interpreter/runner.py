"""The Python API for ad-hoc runs: `run_workflow` (and its async twin `arun_workflow`).

Example:
    ```python
    from interpreter import run_workflow

    result = run_workflow("definitions/examples/order-sync.json", {"since": "2026-11-01"})
    print(result.state, result.output, result.nodes["fetch"].attempts)
    ```
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from prefect import State, tags

from interpreter.definition.identifiers import check_tenant_id
from interpreter.definition.model import Workflow
from interpreter.definition.parameters import prepare_parameters
from interpreter.definition.problems import DefinitionError
from interpreter.definition.validation import Definition, load_definition, validate_document
from interpreter.local_server import use_local_server_if_running
from interpreter.run.flow import RunOutcome, named_flow
from interpreter.run.launch import call_flow, manual_trigger, run_tags
from interpreter.run.resolvers import FileResolver, definition_version
from interpreter.run.results import RunResult
from interpreter.run.secrets import EnvironmentSecrets, MappingSecrets
from interpreter.run.services import RunServices, using_services
from pieces.registry import PieceRegistry, default_registry


def run_workflow(
    definition: Definition,
    parameters: Mapping[str, Any] | None = None,
    *,
    secrets: Mapping[str, str] | None = None,
    tenant: str = "default",
    version: str | None = None,
    trigger: Mapping[str, Any] | None = None,
    registry: PieceRegistry | None = None,
) -> RunResult:
    """Validate a definition and run it as one Prefect flow run; wait for the result.

    Args:
        definition: a dict, JSON text, or a path to a JSON file.
        parameters: the run's parameters; the workflow's `parameters` schema fills defaults.
        secrets: values for `secrets.NAME`; names not given come from the environment variable
            `ALTLAS_SECRET_<NAME in upper case>`. Results and logs show them as `***`.
        tenant: whose run this is (tags, secrets, sub-workflow look-ups).
        version: the version the run is recorded under (default: a content hash).
        trigger: the `trigger` template scope (default: a manual trigger).
        registry: the pieces to use (default: those installed in this process).

    Returns:
        The run's `RunResult`. A failed run is not an exception: `result.state == "failed"`.

    Raises:
        DefinitionError: the definition is invalid (nothing runs).
        DefinitionFileError: the definition's file cannot be read (an `OSError`).
        ParameterError: the parameters fail the workflow's `parameters` schema (nothing runs).
        ValueError: `tenant` is not a tenant id (`^[a-z][a-z0-9-]{0,62}$`).
        TypeError: `definition` is neither a dict, JSON text nor a path.
    """
    call = arun_workflow(
        definition,
        parameters,
        secrets=secrets,
        tenant=tenant,
        version=version,
        trigger=trigger,
        registry=registry,
    )
    if _loop_running():  # called from async code: run on a loop of our own
        return _run_in_thread(call)
    return asyncio.run(call)


async def arun_workflow(
    definition: Definition,
    parameters: Mapping[str, Any] | None = None,
    *,
    secrets: Mapping[str, str] | None = None,
    tenant: str = "default",
    version: str | None = None,
    trigger: Mapping[str, Any] | None = None,
    registry: PieceRegistry | None = None,
) -> RunResult:
    """`run_workflow` for async callers (same arguments and result)."""
    check_tenant_id(tenant)
    document, problems = load_definition(definition)
    registry = registry or default_registry()
    if document is None or (problems := validate_document(document, registry=registry)):
        raise DefinitionError(problems)
    workflow = Workflow.parse(document, registry=registry)
    prepare_parameters(workflow.parameters_schema, dict(parameters or {}))  # refuse before running
    version = version or definition_version(document)
    services = RunServices(
        registry=registry,
        secrets=MappingSecrets(secrets or {}, fallback=EnvironmentSecrets()),
        resolver=_resolver_for(definition),
        prepared=(document, workflow),
    )
    use_local_server_if_running()  # the server `altlas-flows up` started, as the CLI does
    flow = named_flow(workflow.id)
    with (
        using_services(services),
        tags(*run_tags(tenant=tenant, workflow_id=workflow.id, version=version)),
    ):
        state = await call_flow(
            flow,
            run_name=workflow.name,
            definition=document,
            parameters=dict(parameters or {}),
            trigger=dict(trigger) if trigger is not None else manual_trigger(),
            tenant=tenant,
            version=version,
        )
    return await outcome_of(state, workflow_id=workflow.id, version=version, tenant=tenant)


async def outcome_of(state: State, *, workflow_id: str, version: str, tenant: str) -> RunResult:
    """The `RunResult` a finished `workflow_flow` state carries (or one describing a crash)."""
    data = await state.aresult(raise_on_failure=False) if state.data is not None else None
    if isinstance(data, RunOutcome):
        return data.result
    flow_run_id = str(state.state_details.flow_run_id or "")
    return RunResult(
        state="failed",
        output=None,
        flow_run_id=flow_run_id,
        workflow_id=workflow_id,
        version=version,
        tenant=tenant,
        error={"type": state.name or "Crashed", "message": state.message or "the flow run crashed"},
    )


def _resolver_for(definition: Definition) -> FileResolver:
    """Sub-workflows of a definition read from a file are looked for next to that file first."""
    resolver = FileResolver()
    if isinstance(definition, dict) or str(definition).lstrip().startswith("{"):
        return resolver
    return resolver.with_directory(Path(definition).resolve().parent)


def _loop_running() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def _run_in_thread(call: Any) -> RunResult:
    """Run `call` on a new event loop in a thread that shares the caller's context variables
    (Prefect settings and our run services)."""
    box: dict[str, Any] = {}
    context = contextvars.copy_context()

    def target() -> None:
        try:
            box["result"] = context.run(asyncio.run, call)
        except BaseException as exc:  # re-raised in the caller's thread
            box["error"] = exc

    thread = threading.Thread(target=target, name="altlas-run-workflow")
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    result: RunResult = box["result"]
    return result
