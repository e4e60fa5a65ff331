"""Tenant secrets: stored encrypted, listed without values, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import text

from api.store.crypto import SecretBox, generate_secret_key
from api.store.database import Database
from api.store.secrets import (
    all_secret_ciphertexts,
    delete_secret,
    get_secret_ciphertext,
    list_secrets,
    put_secret,
)
from api.store.tenants import create_tenant


@pytest.fixture
async def tenants(database: Database) -> Database:
    async with database.session() as session:
        for tenant_id in ("acme", "beta"):
            await create_tenant(session, tenant_id=tenant_id)
    return database


async def test_put_creates_then_replaces(tenants: Database) -> None:
    async with tenants.session() as session:
        assert await put_secret(session, tenant_id="acme", name="token", ciphertext=b"one")
    async with tenants.session() as session:
        [first], _ = await list_secrets(session, tenant_id="acme")
    async with tenants.session() as session:
        assert not await put_secret(session, tenant_id="acme", name="token", ciphertext=b"two")
    async with tenants.session() as session:
        assert await get_secret_ciphertext(session, tenant_id="acme", name="token") == b"two"
        [second], count = await list_secrets(session, tenant_id="acme")
    assert count == 1
    assert second.name == "token"
    assert second.created_at == first.created_at
    assert second.updated_at > first.updated_at


async def test_values_are_encrypted_at_rest(tenants: Database) -> None:
    box = SecretBox(generate_secret_key())
    async with tenants.session() as session:
        await put_secret(
            session, tenant_id="acme", name="api_token", ciphertext=box.encrypt("hunter2-plain")
        )
    async with tenants.session() as session:
        raw = (await session.execute(text("SELECT ciphertext FROM secrets"))).scalar_one()
        stored = await get_secret_ciphertext(session, tenant_id="acme", name="api_token")
    assert b"hunter2" not in bytes(raw)
    assert stored is not None
    assert box.decrypt(stored) == "hunter2-plain"


async def test_list_is_names_and_times_only_by_name_and_paged(tenants: Database) -> None:
    async with tenants.session() as session:
        for name in ("zeta", "alpha", "mid"):
            await put_secret(session, tenant_id="acme", name=name, ciphertext=b"c-" + name.encode())
        await put_secret(session, tenant_id="beta", name="other", ciphertext=b"x")
    async with tenants.session() as session:
        page, count = await list_secrets(session, tenant_id="acme")
        second, _ = await list_secrets(session, tenant_id="acme", limit=1, offset=1)
    assert [s.name for s in page] == ["alpha", "mid", "zeta"]
    assert count == 3
    assert [s.name for s in second] == ["mid"]
    assert set(type(page[0]).__dataclass_fields__) == {"name", "created_at", "updated_at"}


async def test_delete_and_all_ciphertexts(tenants: Database) -> None:
    async with tenants.session() as session:
        await put_secret(session, tenant_id="acme", name="a", ciphertext=b"1")
        await put_secret(session, tenant_id="acme", name="b", ciphertext=b"2")
        await put_secret(session, tenant_id="beta", name="a", ciphertext=b"3")
    async with tenants.session() as session:
        assert await delete_secret(session, tenant_id="acme", name="a")
        assert not await delete_secret(session, tenant_id="acme", name="a")
        assert not await delete_secret(session, tenant_id="acme", name="never")
    async with tenants.session() as session:
        assert await get_secret_ciphertext(session, tenant_id="acme", name="a") is None
        assert await all_secret_ciphertexts(session, tenant_id="acme") == {"b": b"2"}
        assert await all_secret_ciphertexts(session, tenant_id="beta") == {"a": b"3"}


async def test_concurrent_puts_of_one_name_never_conflict(tenants: Database) -> None:
    async def put(index: int) -> bool:
        async with tenants.session() as session:
            return await put_secret(
                session, tenant_id="acme", name="race", ciphertext=f"v{index}".encode()
            )

    created = await asyncio.gather(*(put(index) for index in range(6)))
    assert sorted(created) == [False] * 5 + [True]
    async with tenants.session() as session:
        value = await get_secret_ciphertext(session, tenant_id="acme", name="race")
    assert value in {f"v{index}".encode() for index in range(6)}
