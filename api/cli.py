"""The service's commands, declared: `db upgrade`, `tenants ...`, `runs ...`, `api`, `worker`,
`up`, `down`. Main entry: `add_commands(subparsers)`.

Only the parser lives here: each command's handler is named by its module path (`lazy`) and
imported when that command runs, so that `altlas-flows validate` does not pay for importing the
service (FastAPI, the store, Prefect's client: seconds on a small machine). What the commands do
is in `api.admin` and `api.up`.
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Callable
from typing import Any

from interpreter.local_server import local_port

API_PORT = 8000
"""Where `up` serves the REST API unless told otherwise."""

UP_DESCRIPTION = """Start the whole engine on this machine, on its embedded default, reusing any
part that already runs: the Prefect server (SQLite in ALTLAS_HOME, default ./.altlas), the
store's migrations, the REST API on 127.0.0.1, and a warm worker. Then load the example
workflows into a `demo` tenant, run those that need no parameters through the API's own path,
and print where everything is, a demo API key and a `curl` line that starts a run. In the
foreground Ctrl-C stops what it started; with --detach it returns, and `down` stops it all."""


def lazy(target: str) -> Callable[[argparse.Namespace], int]:
    """A handler that imports `module:function` when the command runs, and calls it."""
    module_name, _, function_name = target.partition(":")

    def handler(args: argparse.Namespace) -> int:
        function: Any = getattr(importlib.import_module(module_name), function_name)
        code: int = function(args)
        return code

    return handler


def add_commands(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register the service's commands."""
    db = subparsers.add_parser("db", help="the service's database")
    db_commands = db.add_subparsers(dest="db_command", required=True, metavar="COMMAND")
    upgrade = db_commands.add_parser(
        "upgrade", help="apply the migrations (ALTLAS_DATABASE_URL, default SQLite)"
    )
    upgrade.set_defaults(handler=lazy("api.admin:cmd_db_upgrade"))

    tenants = subparsers.add_parser("tenants", help="tenants and their API keys (operator)")
    tenant_commands = tenants.add_subparsers(
        dest="tenants_command", required=True, metavar="COMMAND"
    )
    create = tenant_commands.add_parser("create", help="create a tenant; prints its first key")
    create.add_argument("tenant", metavar="TENANT", help="the id, ^[a-z][a-z0-9-]{0,62}$")
    create.set_defaults(handler=lazy("api.admin:cmd_tenants_create"))
    listing = tenant_commands.add_parser("list", help="every tenant")
    listing.set_defaults(handler=lazy("api.admin:cmd_tenants_list"))
    settings = tenant_commands.add_parser(
        "settings",
        help="show a tenant's settings, or replace them with --set",
        description="A tenant's settings, applied when its workflows are validated and run: "
        "`allowed_pieces` (a list of action piece keys; unset: all), `http_allow` (networks "
        "http.request may reach besides public addresses), `defaults` (`retry` and "
        "`timeout_seconds` for its nodes, between the pieces' own and the workflow's). "
        """Example: --set '{"allowed_pieces": ["core.transform", "http.request"]}'.""",
    )
    settings.add_argument("tenant", metavar="TENANT")
    settings.add_argument("--set", metavar="JSON", help="the new settings, a JSON object")
    settings.set_defaults(handler=lazy("api.admin:cmd_tenants_settings"))
    keys = tenant_commands.add_parser("keys", help="a tenant's API keys")
    key_commands = keys.add_subparsers(dest="keys_command", required=True, metavar="COMMAND")
    key_create = key_commands.add_parser("create", help="a new key (printed once)")
    key_create.add_argument("tenant", metavar="TENANT")
    key_create.set_defaults(handler=lazy("api.admin:cmd_keys_create"))
    key_list = key_commands.add_parser("list", help="the tenant's keys (ids, never the keys)")
    key_list.add_argument("tenant", metavar="TENANT")
    key_list.set_defaults(handler=lazy("api.admin:cmd_keys_list"))
    key_revoke = key_commands.add_parser("revoke", help="revoke a key: 401 from then on")
    key_revoke.add_argument("tenant", metavar="TENANT")
    key_revoke.add_argument("key_id", metavar="KEY_ID")
    key_revoke.set_defaults(handler=lazy("api.admin:cmd_keys_revoke"))

    serve = subparsers.add_parser(
        "api",
        help="serve the REST API (ALTLAS_API_HOST:ALTLAS_API_PORT, default 127.0.0.1:8000)",
        description="Serve the REST API until stopped. Apply the migrations first "
        "(`altlas-flows db upgrade`; `up` does).",
    )
    serve.add_argument("--host", help="address to listen on (default ALTLAS_API_HOST)")
    serve.add_argument("--port", type=int, help="port to listen on (default ALTLAS_API_PORT)")
    serve.set_defaults(handler=lazy("api.admin:cmd_api"))

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
    worker.add_argument("--pool", help="the work pool (default: ALTLAS_WORKER_POOL, else 'altlas')")
    worker.add_argument(
        "--concurrency",
        type=int,
        help="how many runs at once (default: ALTLAS_WORKER_CONCURRENCY, else 8)",
    )
    worker.set_defaults(handler=lazy("api.admin:cmd_worker"))

    runs = subparsers.add_parser("runs", help="start, read and control a tenant's runs")
    run_commands = runs.add_subparsers(dest="runs_command", required=True, metavar="COMMAND")
    start = run_commands.add_parser("start", help="start a run of a stored workflow")
    start.add_argument("workflow_id", metavar="WORKFLOW")
    start.add_argument("--param", action="append", default=[], metavar="KEY=VALUE")
    start.add_argument("--params-json", metavar="JSON", help="all parameters as a JSON object")
    start.add_argument("--version", type=int, help="a stored version (default: the current)")
    start.add_argument("--idempotency-key", metavar="KEY")
    start.set_defaults(handler=lazy("api.admin:cmd_runs_start"))
    for name, help_text in (
        ("show", "a run"),
        ("nodes", "a run's nodes in start order"),
        ("cancel", "cancel a run"),
        ("pause", "pause a run before its next node"),
        ("resume", "resume a paused run"),
    ):
        command = run_commands.add_parser(name, help=help_text)
        command.add_argument("run_id", metavar="RUN_ID")
        if name == "resume":
            command.add_argument("--input-json", metavar="JSON", help="an approval's answer")
        command.set_defaults(handler=lazy(f"api.admin:cmd_runs_{name}"))
    for command in run_commands.choices.values():
        command.add_argument("--tenant", required=True, help="whose run it is")
    _add_up_and_down(subparsers)


def _add_up_and_down(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`up` and `down`."""
    port = local_port()
    up = subparsers.add_parser(
        "up",
        help="start the whole engine here: Prefect server, API, worker, demo workflows",
        description=UP_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    up.add_argument(
        "--port", type=int, default=port,
        help=f"port of the Prefect server on 127.0.0.1 (default {port}: ALTLAS_LOCAL_PREFECT_PORT)",
    )  # fmt: skip
    up.add_argument(
        "--api-port", type=int, default=API_PORT,
        help=f"port of the REST API on 127.0.0.1 (default {API_PORT})",
    )  # fmt: skip
    up.add_argument("--detach", action="store_true", help="return once ready; keep it running")
    up.set_defaults(handler=lazy("api.up:cmd_up"))
    down = subparsers.add_parser(
        "down",
        help="stop what `up` started: the worker, the API, the Prefect server",
        description="Stop the worker and the API that `up` recorded in ALTLAS_HOME (each "
        "checked to be that very process), then the Prefect server answering on 127.0.0.1:PORT "
        "(checked to be a Prefect server), and say what was stopped.",
    )
    down.add_argument(
        "--port", type=int, default=port,
        help=f"port the Prefect server answers on (default {port}: ALTLAS_LOCAL_PREFECT_PORT)",
    )  # fmt: skip
    down.set_defaults(handler=lazy("api.up:cmd_down_all"))
