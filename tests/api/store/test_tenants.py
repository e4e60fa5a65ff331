"""Tenants and API keys, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from api.store.crypto import hash_api_key, key_id_of, new_api_key, verify_api_key
from api.store.database import Database
from api.store.errors import AlreadyExists, NotFound
from api.store.tenants import (
    create_api_key,
    create_tenant,
    find_api_key,
    get_api_key,
    get_tenant,
    list_api_keys,
    list_tenants,
    revoke_api_key,
    touch_api_key,
    update_tenant_settings,
)

SETTINGS = {
    "allowed_pieces": ["core.transform", "http.request"],
    "http_allow": ["api.example.com"],
    "defaults": {"retry": {"max_attempts": 3}, "timeout_seconds": 30},
}


async def test_create_get_and_list_tenants(database: Database) -> None:
    before = datetime.now(UTC)
    async with database.session() as session:
        acme = await create_tenant(session, tenant_id="acme", settings=SETTINGS)
        await create_tenant(session, tenant_id="beta")
        await create_tenant(session, tenant_id="a-first")
    assert acme.id == "acme"
    assert acme.settings == SETTINGS
    assert before <= acme.created_at <= datetime.now(UTC)

    async with database.session() as session:
        loaded = await get_tenant(session, tenant_id="acme")
        beta = await get_tenant(session, tenant_id="beta")
        missing = await get_tenant(session, tenant_id="nobody")
        page, total = await list_tenants(session)
        second_page, _ = await list_tenants(session, limit=1, offset=1)
    assert loaded is not None
    assert (loaded.settings, loaded.created_at) == (SETTINGS, acme.created_at)
    assert beta is not None
    assert beta.settings == {}
    assert missing is None
    assert [t.id for t in page] == ["a-first", "acme", "beta"]
    assert total == 3
    assert [t.id for t in second_page] == ["acme"]


async def test_a_taken_tenant_id_raises_already_exists_and_keeps_the_first(
    database: Database,
) -> None:
    async with database.session() as session:
        await create_tenant(session, tenant_id="acme", settings={"http_allow": ["a"]})
    with pytest.raises(AlreadyExists) as raised:
        async with database.session() as session:
            await create_tenant(session, tenant_id="acme", settings={"http_allow": ["b"]})
    assert (raised.value.kind, raised.value.key) == ("tenant", "acme")
    async with database.session() as session:
        tenant = await get_tenant(session, tenant_id="acme")
    assert tenant is not None
    assert tenant.settings == {"http_allow": ["a"]}


async def test_already_exists_leaves_the_session_usable(database: Database) -> None:
    # No statement failed (ON CONFLICT DO NOTHING): the caller can still audit in the same
    # transaction, also on PostgreSQL, where a failed statement would abort it.
    async with database.session() as session:
        await create_tenant(session, tenant_id="acme")
    async with database.session() as session:
        with pytest.raises(AlreadyExists):
            await create_tenant(session, tenant_id="acme")
        await create_tenant(session, tenant_id="other")
    async with database.session() as session:
        assert [t.id for t in (await list_tenants(session))[0]] == ["acme", "other"]


async def test_concurrent_creations_of_one_tenant_make_exactly_one(database: Database) -> None:
    async def create() -> str:
        try:
            async with database.session() as session:
                await create_tenant(session, tenant_id="race")
        except AlreadyExists:
            return "exists"
        return "created"

    outcomes = await asyncio.gather(*(create() for _ in range(6)))
    assert sorted(outcomes) == ["created"] + ["exists"] * 5


async def test_update_tenant_settings_replaces_them(database: Database) -> None:
    async with database.session() as session:
        await create_tenant(session, tenant_id="acme", settings=SETTINGS)
    async with database.session() as session:
        updated = await update_tenant_settings(
            session, tenant_id="acme", settings={"allowed_pieces": None}
        )
        missing = await update_tenant_settings(session, tenant_id="nobody", settings={})
    assert updated is not None
    assert updated.settings == {"allowed_pieces": None}
    assert missing is None
    async with database.session() as session:
        tenant = await get_tenant(session, tenant_id="acme")
    assert tenant is not None
    assert tenant.settings == {"allowed_pieces": None}


async def test_api_keys_are_stored_hashed_and_found_by_id(database: Database) -> None:
    secret = "server secret"
    key_id, key = new_api_key()
    async with database.session() as session:
        await create_tenant(session, tenant_id="acme")
        stored = await create_api_key(
            session, tenant_id="acme", key_id=key_id, key_hash=hash_api_key(key, secret)
        )
    assert (stored.id, stored.tenant_id, stored.revoked_at, stored.last_used_at) == (
        key_id,
        "acme",
        None,
        None,
    )
    assert key not in stored.hash

    # What authentication does with a presented key.
    async with database.session() as session:
        presented_id = key_id_of(key)
        assert presented_id is not None
        found = await find_api_key(session, key_id=presented_id)
    assert found is not None
    assert found.tenant_id == "acme"
    assert verify_api_key(key, found.hash, [secret])
    async with database.session() as session:
        assert await find_api_key(session, key_id="kunknown0000000") is None


async def test_revoked_keys_are_not_found_but_still_listed(database: Database) -> None:
    async with database.session() as session:
        await create_tenant(session, tenant_id="acme")
        await create_tenant(session, tenant_id="beta")
        for key_id in ("kaaaaaaaaaaaaaaa", "kbbbbbbbbbbbbbbb"):
            await create_api_key(session, tenant_id="acme", key_id=key_id, key_hash="h" * 64)
        await create_api_key(
            session, tenant_id="beta", key_id="kccccccccccccccc", key_hash="h" * 64
        )
    async with database.session() as session:
        assert await revoke_api_key(session, tenant_id="acme", key_id="kaaaaaaaaaaaaaaa")
        # Already revoked, another tenant's, unknown: nothing to revoke.
        assert not await revoke_api_key(session, tenant_id="acme", key_id="kaaaaaaaaaaaaaaa")
        assert not await revoke_api_key(session, tenant_id="acme", key_id="kccccccccccccccc")
        assert not await revoke_api_key(session, tenant_id="acme", key_id="knope00000000000")
    async with database.session() as session:
        assert await find_api_key(session, key_id="kaaaaaaaaaaaaaaa") is None
        assert await find_api_key(session, key_id="kbbbbbbbbbbbbbbb") is not None
        assert await find_api_key(session, key_id="kccccccccccccccc") is not None
        keys = await list_api_keys(session, tenant_id="acme")
        revoked = await get_api_key(session, tenant_id="acme", key_id="kaaaaaaaaaaaaaaa")
        foreign = await get_api_key(session, tenant_id="acme", key_id="kccccccccccccccc")
    assert [(k.id, k.revoked_at is not None) for k in keys] == [
        ("kaaaaaaaaaaaaaaa", True),
        ("kbbbbbbbbbbbbbbb", False),
    ]
    assert revoked is not None
    assert revoked.revoked_at is not None
    assert foreign is None


async def test_creating_a_key_needs_the_tenant_and_a_free_id(database: Database) -> None:
    with pytest.raises(NotFound):
        async with database.session() as session:
            await create_api_key(session, tenant_id="nobody", key_id="k" * 16, key_hash="h")
    async with database.session() as session:
        await create_tenant(session, tenant_id="acme")
        await create_api_key(session, tenant_id="acme", key_id="k" * 16, key_hash="h")
    with pytest.raises(AlreadyExists):
        async with database.session() as session:
            await create_api_key(session, tenant_id="acme", key_id="k" * 16, key_hash="other")


async def test_touch_writes_last_used_at_at_most_once_a_minute(database: Database) -> None:
    start = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
    async with database.session() as session:
        await create_tenant(session, tenant_id="acme")
        await create_api_key(session, tenant_id="acme", key_id="k" * 16, key_hash="h")
    async with database.session() as session:
        assert await touch_api_key(session, key_id="k" * 16, at=start)
        assert not await touch_api_key(session, key_id="k" * 16, at=start + timedelta(seconds=59))
        assert await touch_api_key(session, key_id="k" * 16, at=start + timedelta(seconds=60))
        assert not await touch_api_key(session, key_id="kmissing00000000", at=start)
    async with database.session() as session:
        key = await get_api_key(session, tenant_id="acme", key_id="k" * 16)
    assert key is not None
    assert key.last_used_at == start + timedelta(seconds=60)
