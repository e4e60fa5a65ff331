"""The audit trail: appended per command, listed per tenant newest first."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from api.store.audit import add_audit_record, list_audit_records
from api.store.database import Database

T0 = datetime(2026, 6, 1, 8, 0, tzinfo=UTC)


async def test_records_are_listed_per_tenant_newest_first(database: Database) -> None:
    async with database.session() as session:
        first = await add_audit_record(
            session,
            tenant_id="acme",
            key_id="kaaaaaaaaaaaaaaa",
            command="createWorkflow",
            detail={"workflow_id": "order-sync"},
            at=T0,
        )
        await add_audit_record(
            session,
            tenant_id="acme",
            key_id="kaaaaaaaaaaaaaaa",
            command="startRun",
            outcome="ValidationError",
            at=T0 + timedelta(seconds=5),
        )
        await add_audit_record(session, tenant_id="beta", command="putSecret", at=T0)
        await add_audit_record(session, command="createTenant", detail={"id": "acme"}, at=T0)
    assert isinstance(first.id, int)

    async with database.session() as session:
        acme, count = await list_audit_records(session, tenant_id="acme")
        paged, _ = await list_audit_records(session, tenant_id="acme", limit=1, offset=1)
        operator, operator_count = await list_audit_records(session, tenant_id=None)
        nobody, nobody_count = await list_audit_records(session, tenant_id="nobody")
    assert [(r.command, r.outcome, r.at) for r in acme] == [
        ("startRun", "ValidationError", T0 + timedelta(seconds=5)),
        ("createWorkflow", "ok", T0),
    ]
    assert count == 2
    assert acme[1].detail == {"workflow_id": "order-sync"}
    assert acme[1].key_id == "kaaaaaaaaaaaaaaa"
    assert [r.command for r in paged] == ["createWorkflow"]
    assert [(r.command, r.tenant_id, r.detail) for r in operator] == [
        ("createTenant", None, {"id": "acme"})
    ]
    assert operator_count == 1
    assert (nobody, nobody_count) == ([], 0)


async def test_records_written_in_the_same_instant_keep_insertion_order(
    database: Database,
) -> None:
    async with database.session() as session:
        for index in range(5):
            await add_audit_record(session, tenant_id="acme", command=f"c{index}", at=T0)
    async with database.session() as session:
        records, _ = await list_audit_records(session, tenant_id="acme")
    assert [r.command for r in records] == ["c4", "c3", "c2", "c1", "c0"]
