"""The service's commands: `db upgrade`, `tenants ...`, `runs ...`, `api`, `worker`. Main entry:
`add_commands(subparsers)`.

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
from api.commands.tenants import CreateApiKey, CreateTenant, IssuedKey, RevokeApiKey
from api.dispatcher import Dispatcher
from api.errors import Problem
from api.main import create_app
from api.queries import runs as run_queries
from api.service import Service
from api.settings import get_api_settings
from api.store.migrate import current_revision_sync, head_revision, upgrade_sync
from api.store.tenants import list_api_keys, list_tenants
from api.worker import run_service_worker
from deployments.runner import WarmRunner, WorkerSettings
from interpreter.cli import parse_parameters

Action = Callable[[Service, argparse.Namespace, TextIO], Awaitable[int]]


def add_commands(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register the service's commands."""
    db = subparsers.add_parser("db", help="the service's database")
    db_commands = db.add_subparsers(dest="db_command", required=True, metavar="COMMAND")
    upgrade = db_commands.add_parser(
        "upgrade", help="apply the migrations (ALTLAS_DATABASE_URL, default SQLite)"
    )
    upgrade.set_defaults(handler=cmd_db_upgrade)

    tenants = subparsers.add_parser("tenants", help="tenants and their API keys (operator)")
    tenant_commands = tenants.add_subparsers(
        dest="tenants_command", required=True, metavar="COMMAND"
    )
    create = tenant_commands.add_parser("create", help="create a tenant; prints its first key")
    create.add_argument("tenant", metavar="TENANT", help="the id, ^[a-z][a-z0-9-]{0,62}$")
    create.set_defaults(handler=_sync(create_tenant))
    listing = tenant_commands.add_parser("list", help="every tenant")
    listing.set_defaults(handler=_sync(list_all_tenants))
    keys = tenant_commands.add_parser("keys", help="a tenant's API keys")
    key_commands = keys.add_subparsers(dest="keys_command", required=True, metavar="COMMAND")
    key_create = key_commands.add_parser("create", help="a new key (printed once)")
    key_create.add_argument("tenant", metavar="TENANT")
    key_create.set_defaults(handler=_sync(create_key))
    key_list = key_commands.add_parser("list", help="the tenant's keys (ids, never the keys)")
    key_list.add_argument("tenant", metavar="TENANT")
    key_list.set_defaults(handler=_sync(list_keys))
    key_revoke = key_commands.add_parser("revoke", help="revoke a key: 401 from then on")
    key_revoke.add_argument("tenant", metavar="TENANT")
    key_revoke.add_argument("key_id", metavar="KEY_ID")
    key_revoke.set_defaults(handler=_sync(revoke_key))

    serve = subparsers.add_parser(
        "api",
        help="serve the REST API (ALTLAS_API_HOST:ALTLAS_API_PORT, default 127.0.0.1:8000)",
        description="Serve the REST API until stopped. Apply the migrations first "
        "(`altlas-flows db upgrade`; `up` does).",
    )
    serve.add_argument("--host", help="address to listen on (default ALTLAS_API_HOST)")
    serve.add_argument("--port", type=int, help="port to listen on (default ALTLAS_API_PORT)")
    serve.set_defaults(handler=cmd_api)

    defaults = WorkerSettings()
    worker = subparsers.add_parser(
        "worker",
        help="execute the service's runs in this process (the warm worker)",
        description="Execute the flow runs of the service's work pool in this long-lived "
        "process, with the store's run services (tenant secrets and settings, stored "
        "sub-workflows, run history): new runs are found at once through Prefect's event "
        "stream (and by polling as a safety net), claimed like Prefect's own workers claim "
        "them, and run in threads of this process. SIGTERM or Ctrl-C stops it gracefully. "
        "Settings: ALTLAS_WORKER_* (docs/worker.md).",
    )
    worker.add_argument(
        "--pool", default=defaults.pool, help=f"the work pool (default {defaults.pool!r})"
    )
    worker.add_argument(
        "--concurrency",
        type=int,
        default=defaults.concurrency,
        help=f"how many runs at once (default {defaults.concurrency})",
    )
    worker.set_defaults(handler=cmd_worker)

    runs = subparsers.add_parser("runs", help="start, read and control a tenant's runs")
    run_commands = runs.add_subparsers(dest="runs_command", required=True, metavar="COMMAND")
    start = run_commands.add_parser("start", help="start a run of a stored workflow")
    start.add_argument("workflow_id", metavar="WORKFLOW")
    start.add_argument("--param", action="append", default=[], metavar="KEY=VALUE")
    start.add_argument("--params-json", metavar="JSON", help="all parameters as a JSON object")
    start.add_argument("--version", type=int, help="a stored version (default: the current)")
    start.add_argument("--idempotency-key", metavar="KEY")
    start.set_defaults(handler=_sync(start_run))
    for name, help_text, action in (
        ("show", "a run", show_run),
        ("nodes", "a run's nodes in start order", show_nodes),
        ("cancel", "cancel a run", cancel_run),
        ("pause", "pause a run before its next node", pause_run),
        ("resume", "resume a paused run", resume_run),
    ):
        command = run_commands.add_parser(name, help=help_text)
        command.add_argument("run_id", metavar="RUN_ID")
        if name == "resume":
            command.add_argument("--input-json", metavar="JSON", help="an approval's answer")
        command.set_defaults(handler=_sync(action))
    for command in run_commands.choices.values():
        command.add_argument("--tenant", required=True, help="whose run it is")


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
    host, port = args.host or settings.api_host, args.port or settings.api_port
    out.write(f"serving the REST API at http://{host}:{port} (docs: /docs)\n")
    out.flush()
    uvicorn.run(create_app(settings), host=host, port=port, log_level="info")
    return 0


def cmd_worker(args: argparse.Namespace, out: TextIO = sys.stdout) -> int:
    """Run the service's worker until SIGTERM or Ctrl-C."""
    worker = WorkerSettings(pool=args.pool, concurrency=args.concurrency)

    def ready(runner: WarmRunner) -> None:
        how = "events and polling" if runner.events_connected else "polling only"
        out.write(
            f"worker {runner.name} runs work pool {runner.work_pool!r}, "
            f"{runner.concurrency} at a time ({how}). Stop it with Ctrl-C or SIGTERM.\n"
        )
        out.flush()

    return run_service_worker(get_api_settings(), worker, ready=ready)


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
