"""Stored workflows → Prefect deployments, idempotently. Main entry: `reconcile`.

Each `WorkflowDeployment` (a tenant's workflow at one version) becomes one Prefect deployment
of the generic interpreter flow, shaped so the Prefect UI shows what runs and whose it is:

- the *flow* is named after the workflow id and the *deployment* after the tenant, so the UI's
  deployment list reads `order-sync/acme` (Prefect's own `flow/deployment` naming); two tenants
  with the same workflow id share one flow and have one deployment each;
- `parameters` pin the definition, the tenant and the version (`{"definition", "tenant",
  "version"}`): the UI shows the exact document a run executes, and "Run" / "Quick run" work;
  the parameter form shows the workflow's own `parameters` schema (not enforced by Prefect:
  the engine validates parameters itself);
- tags `altlas`, `tenant:<t>`, `workflow:<id>`, `version:<n>` (copied by Prefect onto every
  flow run of the deployment), the definition's description, the deployment's version `<n>`;
- every `schedule` trigger becomes a deployment schedule (cron with its time zone, interval,
  rrule; `active: false` an inactive schedule) whose slug is the trigger's id and whose
  parameters carry the trigger (`{"trigger": {"type": "schedule", "id": ...}}`);
- a disabled workflow's deployment is `paused` (no scheduled runs);
- the entrypoint is the generic flow (`DEFAULT_ENTRYPOINT`), for Prefect's own workers (with
  `PREFECT_FLOWS_HEARTBEAT_FREQUENCY` in the job's environment, `FLOW_HEARTBEAT_SECONDS`); the
  warm runner (`deployments.runner`) does not need it.

Every write is preceded by a comparison with what Prefect holds, so syncing an unchanged
workflow writes nothing: Prefect's deployment upsert replaces all schedules and deletes the
future runs they had created, which must not happen on every reconciliation.

This module never imports `api`: it takes plain definitions. Importing it does not import
Prefect (the CLI imports it); its functions do.

Example:
    ```python
    async with get_client() as client:
        await ensure_work_pool(client, "altlas")
        report = await reconcile(client, specs, work_pool="altlas")
        print(report.counts())  # {'created': 2, 'updated': 0, 'unchanged': 5, ...}
    ```
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import lru_cache
from typing import TYPE_CHECKING, Any
from uuid import UUID

from pieces.triggers.schedule import ScheduleConfig, ScheduleTrigger, to_deployment_schedule

if TYPE_CHECKING:
    from prefect.client.orchestration import PrefectClient
    from prefect.client.schemas.actions import DeploymentScheduleCreate
    from prefect.client.schemas.objects import WorkPool
    from prefect.client.schemas.responses import DeploymentResponse

ALTLAS_TAG = "altlas"
"""Marks every deployment this module manages; `reconcile` deletes only deployments with it."""

DEFAULT_ENTRYPOINT = "deployments.entrypoint.workflow_flow"

RECENT_SECONDS = 60
"""How long before its specs were read a deployment must have been left unchanged for
`reconcile` to delete it (clocks of the API machines and Prefect's server may differ a little)."""
"""The generic flow, as a module path. Prefect imports a module-path entrypoint directly; a
`file:function` entrypoint would first make it "download" the deployment's code into the
working directory (the form `prefect.yaml` uses, with its own pull step)."""

DEFAULT_WORK_QUEUE = "default"
"""The work queue every work pool has."""

WORK_POOL_TYPE = "process"
"""The pool's type: the warm runner ignores it; `prefect worker start --type process` needs it."""

FLOW_HEARTBEAT_SECONDS = 30
"""How often runs of these deployments send Prefect's flow-run heartbeat (Prefect's minimum;
its default is 180 s). The warm runner sets it for its runs; deployments set it in the job
environment (`PREFECT_FLOWS_HEARTBEAT_FREQUENCY`) for Prefect's own process workers, so the
zombie-run automation (`deployments.runner.ensure_zombie_automation`) sees every run alike."""

_CONCURRENT_WRITES = 4
"""How many workflows `reconcile` syncs at once (each write is one upsert of ~0.1 s)."""


@dataclass(frozen=True)
class WorkflowDeployment:
    """One tenant's workflow at one stored version, as the deployment sync needs it."""

    tenant: str
    workflow_id: str
    version: int
    definition: dict[str, Any]
    enabled: bool = True

    @property
    def key(self) -> str:
        """`<workflow_id>/<tenant>`: the deployment's full name in Prefect."""
        return deployment_name(self.tenant, self.workflow_id)


@dataclass
class ReconcileReport:
    """What `reconcile` did, by deployment full name (`<workflow_id>/<tenant>`)."""

    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    """Why each failed workflow could not be synced (the others were)."""

    def counts(self) -> dict[str, int]:
        """How many deployments were created, updated, unchanged, deleted, failed."""
        return {
            "created": len(self.created),
            "updated": len(self.updated),
            "unchanged": len(self.unchanged),
            "deleted": len(self.deleted),
            "failed": len(self.failed),
        }

    @property
    def changed(self) -> bool:
        """Whether anything was written to Prefect."""
        return bool(self.created or self.updated or self.deleted)


class SyncError(ValueError):
    """A workflow cannot become a deployment (its message says why and what to fix)."""


def deployment_name(tenant: str, workflow_id: str) -> str:
    """The deployment's full name in Prefect: `<workflow_id>/<tenant>` (flow / deployment).

    Example:
        ```python
        deployment_name("acme", "order-sync")  # "order-sync/acme"
        ```
    """
    return f"{workflow_id}/{tenant}"


# --- the desired deployment ----------------------------------------------------------------------


@dataclass(frozen=True)
class _Desired:
    """Everything `sync_workflow` writes for one workflow."""

    spec: WorkflowDeployment
    parameters: dict[str, Any]
    tags: list[str]
    description: str
    version: str
    paused: bool
    work_pool: str
    work_queue: str
    entrypoint: str
    parameter_schema: dict[str, Any]
    job_variables: dict[str, Any]
    schedules: list[DeploymentScheduleCreate]

    def differences(self, actual: DeploymentResponse) -> list[str]:
        """The names of the fields where `actual` differs from this (empty: nothing to write)."""
        found = {
            "parameters": actual.parameters != self.parameters,
            "tags": sorted(actual.tags) != sorted(self.tags),
            "description": (actual.description or "") != self.description,
            "version": actual.version != self.version,
            "paused": actual.paused != self.paused,
            "work_pool": actual.work_pool_name != self.work_pool,
            "work_queue": actual.work_queue_name != self.work_queue,
            "entrypoint": actual.entrypoint != self.entrypoint,
            "parameter_schema": actual.parameter_openapi_schema != self.parameter_schema,
            "enforce_parameter_schema": actual.enforce_parameter_schema is not False,
            "job_variables": actual.job_variables != self.job_variables,
            "schedules": _schedule_keys(actual.schedules) != _schedule_keys(self.schedules),
        }
        return [name for name, differs in found.items() if differs]


def _desired(
    spec: WorkflowDeployment, *, work_pool: str, work_queue: str, entrypoint: str
) -> _Desired:
    from interpreter.run.launch import run_tags

    definition = spec.definition
    if not isinstance(definition, Mapping):
        raise SyncError(f"{spec.key}: the definition is not a JSON object")
    if definition.get("id") != spec.workflow_id:
        raise SyncError(
            f"{spec.key}: the definition's id is {definition.get('id')!r}, not "
            f"{spec.workflow_id!r}; store the definition under its own id"
        )
    version = str(spec.version)
    description = definition.get("description") or definition.get("name") or ""
    return _Desired(
        spec=spec,
        parameters={"definition": definition, "tenant": spec.tenant, "version": version},
        tags=[
            ALTLAS_TAG,
            *run_tags(tenant=spec.tenant, workflow_id=spec.workflow_id, version=version),
        ],
        description=str(description),
        version=version,
        paused=not spec.enabled,
        work_pool=work_pool,
        work_queue=work_queue,
        entrypoint=entrypoint,
        parameter_schema=_parameter_schema(definition.get("parameters")),
        job_variables={"env": {"PREFECT_FLOWS_HEARTBEAT_FREQUENCY": str(FLOW_HEARTBEAT_SECONDS)}},
        schedules=schedules_of(spec),
    )


def schedules_of(spec: WorkflowDeployment) -> list[DeploymentScheduleCreate]:
    """The deployment schedules of the workflow's `schedule` triggers, in definition order.

    Each schedule's slug is the trigger's id; its parameters set the run's `trigger` to
    `{"type": "schedule", "id": <trigger id>, ...}` (merged by Prefect over the deployment's).

    Raises:
        SyncError: a schedule trigger is not valid (the message names the trigger).
    """
    schedules = []
    triggers = spec.definition.get("triggers") or []
    for index, trigger in enumerate(triggers):
        if not isinstance(trigger, Mapping) or trigger.get("type") != ScheduleTrigger.key:
            continue
        trigger_id = str(trigger.get("id") or f"schedule-{index}")
        try:
            config = ScheduleTrigger.parse_config(dict(trigger))
        except ValueError as exc:  # pydantic's ValidationError is a ValueError
            raise SyncError(
                f"{spec.key}: schedule trigger {trigger_id!r} (/triggers/{index}) is invalid: "
                f"{_first_line(exc)}"
            ) from None
        if not isinstance(config, ScheduleConfig):  # pragma: no cover - the piece's own model
            raise SyncError(f"{spec.key}: trigger {trigger_id!r} is not a schedule")
        schedule = to_deployment_schedule(config, slug=trigger_id)
        schedules.append(
            schedule.model_copy(update={"parameters": {"trigger": _schedule_trigger(trigger_id)}})
        )
    return schedules


def _schedule_trigger(trigger_id: str) -> dict[str, Any]:
    """The `trigger` parameter of the runs a schedule creates (`received_at`: when it ran)."""
    return {
        "type": ScheduleTrigger.key,
        "id": trigger_id,
        "payload": {},
        "headers": {},
        "body": None,
        "received_at": None,
    }


def _schedule_keys(schedules: Iterable[Any]) -> set[tuple[Any, ...]]:
    """Schedules as comparable values: what they fire on, active, slug, parameters.

    Prefect returns a schedule as it stored it (an interval's anchor in UTC, an rrule with the
    DTSTART it added), so each is compared by what it means: the anchor as an instant.
    """
    keys = set()
    for entry in schedules:
        schedule = entry.schedule
        data = schedule.model_dump(mode="json", exclude={"anchor_date"})
        anchor = getattr(schedule, "anchor_date", None)
        if anchor is not None:
            data["anchor"] = anchor.timestamp()
        keys.add(
            (
                entry.slug,
                bool(entry.active),
                _frozen(data),
                _frozen(entry.parameters or {}),
            )
        )
    return keys


def _frozen(value: Any) -> Any:
    if isinstance(value, Mapping):
        return tuple(sorted((str(k), _frozen(v)) for k, v in value.items()))
    if isinstance(value, list | tuple):
        return tuple(_frozen(v) for v in value)
    return value


def _parameter_schema(workflow_parameters: Any) -> dict[str, Any]:
    """The generic flow's parameter schema, its `parameters` described by the workflow's own
    schema, so that the Prefect UI's run form asks for the workflow's parameters."""
    schema = copy.deepcopy(_flow_parameter_schema())
    if isinstance(workflow_parameters, Mapping):
        own = {k: v for k, v in workflow_parameters.items() if k != "$schema"}
        properties = schema["properties"]
        properties["parameters"] = {
            **own,
            "title": "parameters",
            "position": properties["parameters"].get("position", 1),
            "description": "the workflow's parameters (defaults from its schema)",
        }
    return schema


@lru_cache(maxsize=1)
def _flow_parameter_schema() -> dict[str, Any]:
    from interpreter.run.flow import workflow_flow

    schema: dict[str, Any] = workflow_flow.parameters.model_dump_for_openapi()
    return schema


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    # pydantic: "1 validation error for ScheduleConfig\n<field>\n  <message> [type=...]"
    return "; ".join(lines[1:3]) if len(lines) > 1 else text


# --- writing ------------------------------------------------------------------------------------


async def ensure_work_pool(client: PrefectClient, name: str) -> WorkPool:
    """The work pool `name`, created (type `process`) if it does not exist yet.

    Idempotent and safe against a concurrent creation by another process.
    """
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound

    try:
        return await client.read_work_pool(name)
    except ObjectNotFound:
        pass
    try:
        return await client.create_work_pool(
            WorkPoolCreate(
                name=name,
                type=WORK_POOL_TYPE,
                description="ALT_LAS workflows (run by `altlas-flows worker`).",
            )
        )
    except ObjectAlreadyExists:
        return await client.read_work_pool(name)


async def sync_workflow(
    client: PrefectClient,
    spec: WorkflowDeployment,
    *,
    work_pool: str,
    work_queue: str = DEFAULT_WORK_QUEUE,
    entrypoint: str = DEFAULT_ENTRYPOINT,
) -> UUID:
    """Create or update the workflow's deployment; write nothing when it is already current.

    Args:
        client: a Prefect client.
        spec: the workflow, its tenant, version and whether it is enabled.
        work_pool: the pool whose workers run it (see `ensure_work_pool`).
        work_queue: the pool's queue (default: the pool's `default` queue).
        entrypoint: the flow Prefect's own workers load (the API's entrypoint sets its
            store-backed services; the default uses the environment's).

    Returns:
        The deployment's id.

    Raises:
        SyncError: the definition cannot become a deployment (a bad schedule, a wrong id).
    """
    deployment_id, _ = await _sync(
        client,
        _desired(spec, work_pool=work_pool, work_queue=work_queue, entrypoint=entrypoint),
        await _read_by_name(client, spec.key),
    )
    return deployment_id


async def _sync(
    client: PrefectClient, desired: _Desired, existing: DeploymentResponse | None
) -> tuple[UUID, str]:
    """Write `desired` unless `existing` already matches; return the id and what happened
    (`created`, `updated` or `unchanged`)."""
    if existing is not None and not desired.differences(existing):
        return existing.id, "unchanged"
    flow_id = (
        existing.flow_id
        if existing is not None
        else await client.create_flow_from_name(desired.spec.workflow_id)
    )
    deployment_id = await client.create_deployment(  # an upsert on (flow, name)
        flow_id=flow_id,
        name=desired.spec.tenant,
        version=desired.version,
        parameters=desired.parameters,
        description=desired.description,
        tags=desired.tags,
        paused=desired.paused,
        work_pool_name=desired.work_pool,
        work_queue_name=desired.work_queue,
        entrypoint=desired.entrypoint,
        parameter_openapi_schema=desired.parameter_schema,
        enforce_parameter_schema=False,
        job_variables=desired.job_variables,
        schedules=desired.schedules,
    )
    return deployment_id, "created" if existing is None else "updated"


async def _read_by_name(client: PrefectClient, full_name: str) -> DeploymentResponse | None:
    from prefect.exceptions import ObjectNotFound

    try:
        return await client.read_deployment_by_name(full_name)
    except ObjectNotFound:
        return None


async def remove_workflow(client: PrefectClient, tenant: str, workflow_id: str) -> bool:
    """Delete the workflow's deployment (Prefect deletes its scheduled runs with it; runs that
    already started stay). Returns False when there was none."""
    from prefect.exceptions import ObjectNotFound

    existing = await _read_by_name(client, deployment_name(tenant, workflow_id))
    if existing is None:
        return False
    try:
        await client.delete_deployment(existing.id)
    except ObjectNotFound:
        return False
    return True


async def reconcile(
    client: PrefectClient,
    specs: Iterable[WorkflowDeployment],
    *,
    work_pool: str,
    work_queue: str = DEFAULT_WORK_QUEUE,
    entrypoint: str = DEFAULT_ENTRYPOINT,
    specs_read_at: datetime | None = None,
) -> ReconcileReport:
    """Make the work pool's ALT_LAS deployments exactly `specs`: create or update each (a
    disabled one paused), delete every deployment tagged `altlas` in the pool that is not one
    of them. Idempotent: a second call with the same specs writes nothing.

    A deployment written less than `RECENT_SECONDS` before `specs_read_at` (when the specs were
    read from their store), or after it, is never deleted: another process may have stored its
    workflow after this one read the list. The next reconciliation deletes it if it is stale.

    One workflow that cannot be synced (a bad schedule, a rejected request) is reported in
    `failed` and does not stop the others. Deployments are listed in one paged query; only
    those that differ are written, a few at a time.

    Args:
        client: a Prefect client.
        specs: every workflow that should have a deployment in the pool.
        work_pool: the pool (see `ensure_work_pool`).
        work_queue: the pool's queue for the deployments.
        entrypoint: see `sync_workflow`.
        specs_read_at: when `specs` were read (timezone-aware); None: delete regardless.

    Returns:
        What was created, updated, left unchanged, deleted, or failed (with why).
    """
    report = ReconcileReport()
    existing = await _altlas_deployments(client, work_pool)
    wanted: dict[str, WorkflowDeployment] = {}
    for spec in specs:
        if spec.key in wanted:
            report.failed[spec.key] = f"{spec.key}: given twice; keep one version per workflow"
            continue
        wanted[spec.key] = spec
    limit = asyncio.Semaphore(_CONCURRENT_WRITES)

    async def one(spec: WorkflowDeployment) -> None:
        async with limit:
            try:
                desired = _desired(
                    spec, work_pool=work_pool, work_queue=work_queue, entrypoint=entrypoint
                )
                current = existing.get(spec.key)
                if current is None:  # perhaps moved to another pool or untagged by hand
                    current = await _read_by_name(client, spec.key)
                _, outcome = await _sync(client, desired, current)
            except Exception as exc:  # one workflow must not stop the others
                report.failed[spec.key] = str(exc) or type(exc).__name__
                return
            getattr(report, outcome).append(spec.key)

    await asyncio.gather(*(one(spec) for spec in wanted.values()))
    recent = specs_read_at - timedelta(seconds=RECENT_SECONDS) if specs_read_at else None
    for key, deployment in existing.items():
        if key in wanted or key in report.failed:
            continue
        if recent is not None and deployment.updated is not None and deployment.updated >= recent:
            continue  # perhaps a workflow stored through another process meanwhile
        try:
            await client.delete_deployment(deployment.id)
        except Exception as exc:
            report.failed[key] = f"could not delete {key}: {exc}"
            continue
        report.deleted.append(key)
    for names in (report.created, report.updated, report.unchanged, report.deleted):
        names.sort()
    return report


async def _altlas_deployments(
    client: PrefectClient, work_pool: str
) -> dict[str, DeploymentResponse]:
    """The pool's deployments tagged `altlas`, by full name (`<flow name>/<deployment name>`)."""
    from prefect.client.schemas.filters import (
        DeploymentFilter,
        DeploymentFilterTags,
        FlowFilter,
        FlowFilterId,
        WorkPoolFilter,
        WorkPoolFilterName,
    )

    page_size = 200
    found: list[DeploymentResponse] = []
    while True:
        page = await client.read_deployments(
            deployment_filter=DeploymentFilter(tags=DeploymentFilterTags(all_=[ALTLAS_TAG])),
            work_pool_filter=WorkPoolFilter(name=WorkPoolFilterName(any_=[work_pool])),
            limit=page_size,
            offset=len(found),
        )
        found.extend(page)
        if len(page) < page_size:
            break
    flow_ids = sorted({d.flow_id for d in found}, key=str)
    names: dict[UUID, str] = {}
    for start in range(0, len(flow_ids), page_size):
        chunk = flow_ids[start : start + page_size]
        flows = await client.read_flows(
            flow_filter=FlowFilter(id=FlowFilterId(any_=chunk)), limit=page_size
        )
        names.update({f.id: f.name for f in flows})
    return {f"{names[d.flow_id]}/{d.name}": d for d in found if d.flow_id in names}
