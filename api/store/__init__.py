"""Persistence of the service: every SQL statement the service runs is in this package.

Modules, each owning one concern:

- `database`: the connection (`Database`: engine, `session()` transactions, SQLite pragmas) and
  the SQL spelled differently per dialect (`dialect_insert`, `json_array_contains`, `fetch_page`).
- `models`: the tables and the domain enums (`RunState` and its forward-only rule, `NodeStatus`,
  `TriggerType`), with portable column types (`UtcDateTime`, `StrEnumType`).
- `migrate`: Alembic migrations (in `api/migrations/`) driven from code (`upgrade`).
- `crypto`: secrets at rest (`SecretBox`, the server key file), API keys (new, parse, keyed
  hash, verify), canonical JSON digests.
- `errors`: `AlreadyExists`, `NotFound`.
- Repositories (plain async functions taking an `AsyncSession`, keyword-only arguments, scoped by
  `tenant_id`): `tenants` (tenants, API keys), `workflows` (workflows, versions), `secrets`
  (ciphertexts), `runs` (runs, idempotency keys, node history, statistics), `audit`.
- `ports`: the engine's ports on the store, for a worker (`store_run_services`: `StoreSecrets`,
  `StoreResolver`, `StoreRecorder`), and `StoreLoop`, the one event loop on which they use
  their `Database` whichever run's loop calls them. Imported on first use of one of its names
  (it imports the engine's `interpreter.run.services`, which the rest of the store does not need).

Callers own the transaction: `async with database.session() as session:` commits once at the end,
so a command's writes (run, idempotency key, audit record) land together or not at all.
"""

from typing import TYPE_CHECKING, Any

from api.store.audit import add_audit_record, list_audit_records
from api.store.crypto import (
    SecretBox,
    SecretDecryptionError,
    SecretKeyError,
    canonical_json,
    generate_secret_key,
    hash_api_key,
    json_digest,
    key_id_of,
    load_or_create_secret_key,
    new_api_key,
    server_keys,
    verify_api_key,
)
from api.store.database import Database
from api.store.errors import AlreadyExists, NotFound, StoreError
from api.store.migrate import (
    current_revision,
    current_revision_sync,
    downgrade,
    head_revision,
    upgrade,
    upgrade_sync,
)
from api.store.models import (
    ApiKey,
    AuditRecord,
    Base,
    IdempotencyKey,
    NodeRun,
    NodeStatus,
    Run,
    RunState,
    Secret,
    Tenant,
    TriggerType,
    Workflow,
    WorkflowVersion,
)
from api.store.runs import (
    IDEMPOTENCY_TTL,
    WEBHOOK_DEDUPE_TTL,
    Reservation,
    WorkflowStats,
    cap_record_value,
    create_run,
    get_run,
    get_run_by_flow_run,
    get_run_by_id,
    list_node_runs,
    list_runs,
    list_runs_by_state,
    purge_idempotency_keys,
    reserve_idempotency_key,
    reserve_webhook_delivery,
    set_flow_run,
    update_run_state,
    upsert_node_run,
    workflow_stats,
)
from api.store.secrets import (
    SecretInfo,
    all_secret_ciphertexts,
    delete_secret,
    get_secret_ciphertext,
    list_secrets,
    put_secret,
)
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
from api.store.workflows import (
    VersionSummary,
    create_workflow,
    delete_workflow,
    get_current_version,
    get_workflow,
    get_workflow_version,
    list_current_versions,
    list_enabled_workflows,
    list_versions,
    list_workflows,
    set_enabled,
    update_workflow,
)

if TYPE_CHECKING:
    from api.store.ports import (
        StoreLoop,
        StoreRecorder,
        StoreResolver,
        StoreSecrets,
        store_run_services,
    )

_PORTS = frozenset(
    {"StoreLoop", "StoreRecorder", "StoreResolver", "StoreSecrets", "store_run_services"}
)


def __getattr__(name: str) -> Any:
    """The names of `ports`, imported on first use."""
    if name in _PORTS:
        from api.store import ports

        return getattr(ports, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "IDEMPOTENCY_TTL",
    "WEBHOOK_DEDUPE_TTL",
    "AlreadyExists",
    "ApiKey",
    "AuditRecord",
    "Base",
    "Database",
    "IdempotencyKey",
    "NodeRun",
    "NodeStatus",
    "NotFound",
    "Reservation",
    "Run",
    "RunState",
    "Secret",
    "SecretBox",
    "SecretDecryptionError",
    "SecretInfo",
    "SecretKeyError",
    "StoreError",
    "StoreLoop",
    "StoreRecorder",
    "StoreResolver",
    "StoreSecrets",
    "Tenant",
    "TriggerType",
    "VersionSummary",
    "Workflow",
    "WorkflowStats",
    "WorkflowVersion",
    "add_audit_record",
    "all_secret_ciphertexts",
    "canonical_json",
    "cap_record_value",
    "create_api_key",
    "create_run",
    "create_tenant",
    "create_workflow",
    "current_revision",
    "current_revision_sync",
    "delete_secret",
    "delete_workflow",
    "downgrade",
    "find_api_key",
    "generate_secret_key",
    "get_api_key",
    "get_current_version",
    "get_run",
    "get_run_by_flow_run",
    "get_run_by_id",
    "get_secret_ciphertext",
    "get_tenant",
    "get_workflow",
    "get_workflow_version",
    "hash_api_key",
    "head_revision",
    "json_digest",
    "key_id_of",
    "list_api_keys",
    "list_audit_records",
    "list_current_versions",
    "list_enabled_workflows",
    "list_node_runs",
    "list_runs",
    "list_runs_by_state",
    "list_secrets",
    "list_tenants",
    "list_versions",
    "list_workflows",
    "load_or_create_secret_key",
    "new_api_key",
    "purge_idempotency_keys",
    "put_secret",
    "reserve_idempotency_key",
    "reserve_webhook_delivery",
    "revoke_api_key",
    "server_keys",
    "set_enabled",
    "set_flow_run",
    "store_run_services",
    "touch_api_key",
    "update_run_state",
    "update_tenant_settings",
    "update_workflow",
    "upgrade",
    "upgrade_sync",
    "upsert_node_run",
    "verify_api_key",
    "workflow_stats",
]
