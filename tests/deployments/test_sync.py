"""`deployments.sync`: workflows become Prefect deployments, idempotently, on a real server."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any

import pytest

from deployments.sync import (
    ALTLAS_TAG,
    DEFAULT_ENTRYPOINT,
    SyncError,
    WorkflowDeployment,
    deployment_name,
    reconcile,
    remove_workflow,
    sync_workflow,
)
from tests.deployments.conftest import chain_definition, unique

if TYPE_CHECKING:
    from prefect.client.orchestration import PrefectClient

TRIGGERS = [
    {"id": "nightly", "type": "schedule", "cron": "0 2 * * *", "timezone": "Europe/Istanbul"},
    {"id": "hourly", "type": "schedule", "interval_seconds": 3600, "timezone": "Asia/Kolkata"},
    {
        "id": "mondays",
        "type": "schedule",
        "rrule": "FREQ=WEEKLY;BYDAY=MO;BYHOUR=9",
        "active": False,
    },
    {"id": "by-hand", "type": "manual"},
]


def spec(tenant: str, workflow_id: str, version: int = 1, **extra: Any) -> WorkflowDeployment:
    enabled = extra.pop("enabled", True)
    return WorkflowDeployment(
        tenant=tenant,
        workflow_id=workflow_id,
        version=version,
        definition=chain_definition(workflow_id, **extra),
        enabled=enabled,
    )


def schedules_by_slug(deployment: Any) -> dict[str, Any]:
    return {schedule.slug: schedule for schedule in deployment.schedules}


async def test_a_workflow_becomes_a_deployment_that_shows_what_runs_and_whose(
    client: PrefectClient, work_pool: str
) -> None:
    tenant, workflow_id = unique("acme"), unique("order-sync")
    wanted = spec(tenant, workflow_id, version=3, triggers=TRIGGERS)

    deployment_id = await sync_workflow(client, wanted, work_pool=work_pool)

    deployment = await client.read_deployment(deployment_id)
    flow = await client.read_flow(deployment.flow_id)
    assert f"{flow.name}/{deployment.name}" == deployment_name(tenant, workflow_id)
    assert (flow.name, deployment.name) == (workflow_id, tenant)
    assert deployment.parameters == {
        "definition": wanted.definition,
        "tenant": tenant,
        "version": "3",
    }
    assert sorted(deployment.tags) == sorted(
        [ALTLAS_TAG, f"tenant:{tenant}", f"workflow:{workflow_id}", "version:3"]
    )
    assert deployment.description == "three transforms in a row"
    assert deployment.version == "3"
    assert deployment.paused is False
    assert (deployment.work_pool_name, deployment.work_queue_name) == (work_pool, "default")
    assert deployment.entrypoint == DEFAULT_ENTRYPOINT
    schedules = schedules_by_slug(deployment)
    assert set(schedules) == {"nightly", "hourly", "mondays"}  # the manual trigger is none
    nightly, hourly, mondays = schedules["nightly"], schedules["hourly"], schedules["mondays"]
    assert (nightly.schedule.cron, nightly.schedule.timezone) == ("0 2 * * *", "Europe/Istanbul")
    assert hourly.schedule.interval == timedelta(hours=1)
    assert hourly.schedule.timezone == "Asia/Kolkata"
    assert "FREQ=WEEKLY;BYDAY=MO;BYHOUR=9" in mondays.schedule.rrule
    assert (nightly.active, hourly.active, mondays.active) == (True, True, False)
    assert nightly.parameters["trigger"]["type"] == "schedule"
    assert nightly.parameters["trigger"]["id"] == "nightly"


async def test_syncing_again_writes_nothing_and_a_new_version_replaces_the_schedules(
    client: PrefectClient, work_pool: str
) -> None:
    tenant, workflow_id = unique("acme"), unique("report")
    first = spec(tenant, workflow_id, version=1, triggers=TRIGGERS)
    deployment_id = await sync_workflow(client, first, work_pool=work_pool)
    before = await client.read_deployment(deployment_id)

    assert await sync_workflow(client, first, work_pool=work_pool) == deployment_id
    again = await client.read_deployment(deployment_id)
    assert again.updated == before.updated  # nothing was written
    assert {s.id for s in again.schedules} == {s.id for s in before.schedules}

    changed = [{"id": "nightly", "type": "schedule", "cron": "30 4 * * *", "timezone": "UTC"}]
    second = spec(tenant, workflow_id, version=2, triggers=changed)
    assert await sync_workflow(client, second, work_pool=work_pool) == deployment_id
    after = await client.read_deployment(deployment_id)
    assert "version:2" in after.tags
    assert "version:1" not in after.tags
    assert after.parameters["version"] == "2"
    schedules = schedules_by_slug(after)
    assert set(schedules) == {"nightly"}
    assert (schedules["nightly"].schedule.cron, schedules["nightly"].schedule.timezone) == (
        "30 4 * * *",
        "UTC",
    )


async def test_a_disabled_workflow_is_paused_and_enabling_it_resumes_it(
    client: PrefectClient, work_pool: str
) -> None:
    tenant, workflow_id = unique("acme"), unique("paused")
    deployment_id = await sync_workflow(
        client, spec(tenant, workflow_id, enabled=False, triggers=TRIGGERS), work_pool=work_pool
    )
    assert (await client.read_deployment(deployment_id)).paused is True
    await sync_workflow(client, spec(tenant, workflow_id, triggers=TRIGGERS), work_pool=work_pool)
    assert (await client.read_deployment(deployment_id)).paused is False


async def test_remove_workflow_deletes_the_deployment_once(
    client: PrefectClient, work_pool: str
) -> None:
    tenant, workflow_id = unique("acme"), unique("gone")
    await sync_workflow(client, spec(tenant, workflow_id), work_pool=work_pool)

    assert await remove_workflow(client, tenant, workflow_id) is True
    assert await remove_workflow(client, tenant, workflow_id) is False
    from prefect.exceptions import ObjectNotFound

    with pytest.raises(ObjectNotFound):
        await client.read_deployment_by_name(deployment_name(tenant, workflow_id))


async def test_a_bad_definition_is_refused_with_the_reason(
    client: PrefectClient, work_pool: str
) -> None:
    tenant, workflow_id = unique("acme"), unique("bad")
    bad_cron = [{"id": "nightly", "type": "schedule", "cron": "61 * * * *"}]
    with pytest.raises(SyncError, match=r"schedule trigger 'nightly' \(/triggers/0\).*minute"):
        await sync_workflow(
            client, spec(tenant, workflow_id, triggers=bad_cron), work_pool=work_pool
        )
    other = WorkflowDeployment(tenant, workflow_id, 1, chain_definition("another-id"), True)
    with pytest.raises(SyncError, match="definition's id is 'another-id'"):
        await sync_workflow(client, other, work_pool=work_pool)


async def test_reconcile_repairs_drift_deletes_orphans_and_then_changes_nothing(
    client: PrefectClient, prefect_server: str
) -> None:
    from prefect.client.schemas.actions import DeploymentUpdate

    from deployments.sync import ensure_work_pool

    pool = unique("reconcile-pool")  # a pool of its own: reconcile owns every altlas deployment
    await ensure_work_pool(client, pool)
    tenant = unique("acme")
    kept, tampered, lost = unique("kept"), unique("tampered"), unique("lost")
    specs = [
        spec(tenant, kept, triggers=TRIGGERS),
        spec(tenant, tampered),
        spec(tenant, lost, version=4),
        spec(tenant, unique("broken"), triggers=[{"id": "t", "type": "schedule", "cron": "x"}]),
    ]
    bystander = await client.create_deployment(  # not ours: never touched
        flow_id=await client.create_flow_from_name(unique("hand-made")),
        name="manual",
        work_pool_name=pool,
        tags=["someone-else"],
    )

    first = await reconcile(client, specs, work_pool=pool)
    assert first.counts() == {
        "created": 3,
        "updated": 0,
        "unchanged": 0,
        "deleted": 0,
        "failed": 1,
    }, first
    (failed_key, reason), *_ = first.failed.items()
    assert failed_key == specs[3].key
    assert "schedule trigger 't'" in reason

    second = await reconcile(client, specs, work_pool=pool)
    assert second.counts() == {**first.counts(), "created": 0, "unchanged": 3}, second

    # Drift by hand: one deployment deleted, one's parameters changed, one orphan added.
    lost_deployment = await client.read_deployment_by_name(deployment_name(tenant, lost))
    await client.delete_deployment(lost_deployment.id)
    tampered_deployment = await client.read_deployment_by_name(deployment_name(tenant, tampered))
    await client.update_deployment(
        tampered_deployment.id, DeploymentUpdate(parameters={"definition": {"id": "evil"}})
    )
    orphan, elsewhere = unique("orphan"), unique("elsewhere")
    await sync_workflow(client, spec(tenant, orphan), work_pool=pool)
    other_pool = unique("other-pool")
    await ensure_work_pool(client, other_pool)
    await sync_workflow(client, spec(tenant, elsewhere), work_pool=other_pool)

    third = await reconcile(client, specs, work_pool=pool)
    assert third.created == [deployment_name(tenant, lost)], third
    assert third.updated == [deployment_name(tenant, tampered)], third
    assert third.deleted == [deployment_name(tenant, orphan)], third
    assert third.unchanged == [deployment_name(tenant, kept)], third
    restored = await client.read_deployment_by_name(deployment_name(tenant, tampered))
    assert restored.parameters["definition"] == specs[1].definition
    recreated = await client.read_deployment_by_name(deployment_name(tenant, lost))
    assert recreated.parameters["version"] == "4"
    assert (await client.read_deployment(bystander)).name == "manual"
    # Another pool's deployments are not this reconciliation's business.
    assert (
        await client.read_deployment_by_name(deployment_name(tenant, elsewhere))
    ).paused is False

    fourth = await reconcile(client, specs, work_pool=pool)
    assert fourth.counts() == second.counts(), fourth


async def test_reconcile_leaves_a_deployment_written_since_its_specs_were_read(
    client: PrefectClient, prefect_server: str
) -> None:
    """Another API process may store a workflow (and write its deployment) after this one read
    the list of workflows: that deployment is not an orphan yet."""
    from datetime import UTC, datetime, timedelta

    from deployments.sync import ensure_work_pool

    pool = unique("race-pool")
    await ensure_work_pool(client, pool)
    tenant = unique("acme")
    read_at = datetime.now(UTC)
    newcomer = unique("newcomer")
    await sync_workflow(client, spec(tenant, newcomer), work_pool=pool)

    report = await reconcile(client, [], work_pool=pool, specs_read_at=read_at)
    assert report.deleted == [], report
    assert await client.read_deployment_by_name(deployment_name(tenant, newcomer))

    # Read a while after it was written, it is an orphan and goes.
    later = datetime.now(UTC) + timedelta(seconds=120)
    report = await reconcile(client, [], work_pool=pool, specs_read_at=later)
    assert report.deleted == [deployment_name(tenant, newcomer)], report
