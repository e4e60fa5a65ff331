"""What the service's commands do (`api.cli` declares them): `db upgrade`, `tenants ...`,
`runs ...`, `api`, `worker`.

They act on the service's store (`ALTLAS_DATABASE_URL`, default SQLite in `ALTLAS_HOME`) from the
server's own command line, as the operator; the run commands go through the same command bus as
the REST routes (validation, tenant scoping, audit) and print what the API would answer.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from typing import Any, TextIO

from pydantic import BaseModel

from api.auth import Principal
from api.commands import build_bus
from api.commands.runs import CancelRun, PauseRun, ResumeRun, StartRun
from api.commands.tenants import (
    CreateApiKey,
    CreateTenant,
    IssuedKey,
    RevokeApiKey,
    UpdateTenantSettings,
)
from api.dispatcher import Dispatcher
from api.errors import NotFoundProblem, Problem
from api.main import create_app
from api.queries import runs as run_queries
from api.service import Service
from api.settings import get_api_settings
from api.store.migrate import (
    current_revision_sync,
    head_revision,
    unmigrated_reason,
    upgrade_sync,
)
from api.store.tenants import get_tenant, list_api_keys, list_tenants
from api.worker import run_service_worker
from deployments.runner import WarmRunner, WorkerSettings
from interpreter.cli import parse_parameters

Action = Callable[[Service, argparse.Namespace, TextIO], Awaitable[int]]


def _sync(action: Action) -> Callable[[argparse.Namespace], int]:
    """An argparse handler running `action` with a service on a fresh event loop; a problem
    is printed as the API would answer it, exit 1."""

    def handler(args: argparse.Namespace, out: TextIO = sys.stdout) -> int:
        async def run() -> int:
            service = Service.create(get_api_settings())
            try:
                return await action(service, args, out)
            except Problem as problem:
                sys.stderr.write(json.dumps(problem.body(), indent=2) + "\n")
                return 1
            finally:
                await service.close()

        return asyncio.run(run())

    return handler


def _print(out: TextIO, value: BaseModel | dict[str, Any] | list[Any]) -> None:
    text = (
        value.model_dump_json(indent=2)
        if isinstance(value, BaseModel)
        else json.dumps(value, indent=2, default=str)
    )
    out.write(text + "\n")


def cmd_api(args: argparse.Namespace, out: TextIO = sys.stdout) -> int:
    """Serve the API with uvicorn until SIGTERM or Ctrl-C."""
    import uvicorn

    settings = get_api_settings()
    if (reason := unmigrated_reason(settings.database_url_resolved())) is not None:
        sys.stderr.write(f"altlas-flows api: {reason}\n")
        return 2
    host, port = args.host or settings.api_host, args.port or settings.api_port
    out.write(f"serving the REST API at http://{host}:{port} (docs: /docs)\n")
    out.flush()
    uvicorn.run(create_app(settings), host=host, port=port, log_level="info")
    return 0


def cmd_worker(args: argparse.Namespace, out: TextIO = sys.stdout) -> int:
    """Run the service's worker until SIGTERM or Ctrl-C."""
    settings = get_api_settings()
    if (reason := unmigrated_reason(settings.database_url_resolved())) is not None:
        sys.stderr.write(f"altlas-flows worker: {reason}\n")
        return 2
    defaults = WorkerSettings()
    worker = defaults.model_copy(
        update={
            "pool": args.pool or defaults.pool,
            "concurrency": args.concurrency or defaults.concurrency,
        }
    )

    def ready(runner: WarmRunner) -> None:
        how = "events and polling" if runner.events_connected else "polling only"
        out.write(
            f"worker {runner.name} runs work pool {runner.work_pool!r}, "
            f"{runner.concurrency} at a time ({how}). Stop it with Ctrl-C or SIGTERM.\n"
        )
        out.flush()

    return run_service_worker(settings, worker, ready=ready)


def cmd_db_upgrade(args: argparse.Namespace, out: TextIO = sys.stdout) -> int:
    """Apply the store's migrations (idempotent)."""
    url = get_api_settings().database_url_resolved()
    before = current_revision_sync(url)
    upgrade_sync(url)
    after = head_revision()
    state = "already at" if before == after else f"upgraded from {before or 'empty'} to"
    out.write(f"database {state} revision {after}\n")
    return 0


async def create_tenant(service: Service, args: argparse.Namespace, out: TextIO) -> int:
    issued: IssuedKey = await build_bus(service).dispatch(
        CreateTenant(new_tenant_id=args.tenant), Principal.for_operator()
    )
    out.write(f"tenant {issued.tenant_id} created\nAPI key (shown once): {issued.api_key}\n")
    return 0


async def tenant_settings(service: Service, args: argparse.Namespace, out: TextIO) -> int:
    if args.set is not None:
        try:
            wanted = json.loads(args.set)
        except json.JSONDecodeError as exc:
            sys.stderr.write(f"altlas-flows tenants settings: --set is not JSON: {exc.msg}\n")
            return 2
        if not isinstance(wanted, dict):
            sys.stderr.write("altlas-flows tenants settings: --set takes a JSON object\n")
            return 2
        command = UpdateTenantSettings(for_tenant=args.tenant, settings=wanted)
        await build_bus(service).dispatch(command, Principal.for_operator())
    async with service.database.session() as session:
        tenant = await get_tenant(session, tenant_id=args.tenant)
    if tenant is None:
        raise NotFoundProblem(f"tenant {args.tenant!r}")
    _print(out, tenant.settings or {})
    return 0


async def list_all_tenants(service: Service, args: argparse.Namespace, out: TextIO) -> int:
    async with service.database.session() as session:
        rows, _ = await list_tenants(session, limit=10_000)
    for row in rows:
        out.write(f"{row.id}  created {row.created_at.isoformat()}\n")
    return 0


async def create_key(service: Service, args: argparse.Namespace, out: TextIO) -> int:
    issued: IssuedKey = await build_bus(service).dispatch(
        CreateApiKey(for_tenant=args.tenant), Principal.for_operator()
    )
    out.write(f"key {issued.key_id} for {issued.tenant_id}\n")
    out.write(f"API key (shown once): {issued.api_key}\n")
    return 0


async def list_keys(service: Service, args: argparse.Namespace, out: TextIO) -> int:
    async with service.database.session() as session:
        keys = await list_api_keys(session, tenant_id=args.tenant)
    for key in keys:
        state = f"revoked {key.revoked_at.isoformat()}" if key.revoked_at else "live"
        out.write(f"{key.id}  created {key.created_at.isoformat()}  {state}\n")
    return 0


async def revoke_key(service: Service, args: argparse.Namespace, out: TextIO) -> int:
    await build_bus(service).dispatch(
        RevokeApiKey(for_tenant=args.tenant, key_id=args.key_id), Principal.for_operator()
    )
    out.write(f"key {args.key_id} revoked\n")
    return 0


async def start_run(service: Service, args: argparse.Namespace, out: TextIO) -> int:
    accepted: list[str] = []
    service.run_accepted = accepted.append
    try:
        parameters = parse_parameters({}, args.param, args.params_json)
    except ValueError as exc:
        sys.stderr.write(f"altlas-flows runs start: {exc}\n")
        return 2
    command = StartRun(
        tenant_id=args.tenant,
        workflow_id=args.workflow_id,
        parameters=parameters,
        version=args.version,
        idempotency_key=args.idempotency_key,
    )
    run = await build_bus(service).dispatch(command, Principal.acting_for(args.tenant))
    dispatcher = Dispatcher(service)
    for run_id in accepted:  # this process exits: hand the run to Prefect before it does
        await dispatcher.dispatch(run_id)
    return await show_run(service, argparse.Namespace(tenant=args.tenant, run_id=run.id), out)


async def show_run(service: Service, args: argparse.Namespace, out: TextIO) -> int:
    async with service.database.session() as session:
        found = await run_queries.get_run(
            session, service, tenant_id=args.tenant, run_id=args.run_id
        )
    _print(out, found)
    return 0


async def show_nodes(service: Service, args: argparse.Namespace, out: TextIO) -> int:
    async with service.database.session() as session:
        page = await run_queries.list_run_nodes(
            session, service, tenant_id=args.tenant, run_id=args.run_id
        )
    _print(out, page)
    return 0


async def cancel_run(service: Service, args: argparse.Namespace, out: TextIO) -> int:
    await build_bus(service).dispatch(
        CancelRun(tenant_id=args.tenant, run_id=args.run_id), Principal.acting_for(args.tenant)
    )
    return await show_run(service, args, out)


async def pause_run(service: Service, args: argparse.Namespace, out: TextIO) -> int:
    await build_bus(service).dispatch(
        PauseRun(tenant_id=args.tenant, run_id=args.run_id), Principal.acting_for(args.tenant)
    )
    return await show_run(service, args, out)


async def resume_run(service: Service, args: argparse.Namespace, out: TextIO) -> int:
    answer = json.loads(args.input_json) if args.input_json else None
    await build_bus(service).dispatch(
        ResumeRun(tenant_id=args.tenant, run_id=args.run_id, input=answer),
        Principal.acting_for(args.tenant),
    )
    return await show_run(service, args, out)


cmd_tenants_create = _sync(create_tenant)
cmd_tenants_list = _sync(list_all_tenants)
cmd_tenants_settings = _sync(tenant_settings)
cmd_keys_create = _sync(create_key)
cmd_keys_list = _sync(list_keys)
cmd_keys_revoke = _sync(revoke_key)
cmd_runs_start = _sync(start_run)
cmd_runs_show = _sync(show_run)
cmd_runs_nodes = _sync(show_nodes)
cmd_runs_cancel = _sync(cancel_run)
cmd_runs_pause = _sync(pause_run)
cmd_runs_resume = _sync(resume_run)
