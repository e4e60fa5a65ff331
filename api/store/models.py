"""The service's tables (SQLAlchemy 2 declarative models) and the domain enums stored in them.

Owns: `RunState` (with the forward-only rule of a run's state), `NodeStatus`, `TriggerType`, the
portable column types (`UtcDateTime`: aware UTC datetimes on SQLite and PostgreSQL alike;
`StrEnumType`: an enum stored as its string value) and one model per table. The Alembic migrations
in `api/migrations/versions/` create exactly this schema; a test compares the two.

Models carry no relationships on purpose: async sessions cannot lazy-load, so every repository
states what it reads with an explicit query.
"""

from __future__ import annotations

import enum
import uuid
from datetime import UTC, datetime
from typing import Any, ClassVar, TypeVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Dialect,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    TypeDecorator,
    false,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# --- domain enums ---------------------------------------------------------------------------------


class RunState(enum.StrEnum):
    """State of a run as the service reports it (REST `Run.state`)."""

    ACCEPTED = "accepted"
    SCHEDULED = "scheduled"
    RUNNING = "running"
    PAUSED = "paused"
    COMPLETED = "completed"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    CANCELLING = "cancelling"
    CANCELLED = "cancelled"
    CRASHED = "crashed"

    # Filled in below the class: an Enum body would turn these into members.
    ACTIVE: ClassVar[frozenset[RunState]]
    FINISHED: ClassVar[frozenset[RunState]]

    @property
    def is_active(self) -> bool:
        return self in RunState.ACTIVE

    @property
    def is_finished(self) -> bool:
        return self in RunState.FINISHED

    def can_move_to(self, other: RunState) -> bool:
        """Whether a run in this state may move to `other`: only forward, never out of a finished
        state, never to itself; `paused` → `running` (resume) is the one step back allowed."""
        if self in RunState.FINISHED or self is other:
            return False
        if self is RunState.PAUSED and other is RunState.RUNNING:
            return True
        return _RUN_STATE_RANK[other] > _RUN_STATE_RANK[self]

    @classmethod
    def predecessors(cls, target: RunState) -> frozenset[RunState]:
        """Every state a run may move to `target` from."""
        return frozenset(state for state in cls if state.can_move_to(target))


RunState.ACTIVE = frozenset(
    {
        RunState.ACCEPTED,
        RunState.SCHEDULED,
        RunState.RUNNING,
        RunState.PAUSED,
        RunState.CANCELLING,
    }
)
RunState.FINISHED = frozenset(set(RunState) - RunState.ACTIVE)

# accepted → scheduled → running → (paused → cancelling) → finished. Paused ranks below cancelling:
# a paused run may be cancelled, a cancelling run is never paused.
_RUN_STATE_RANK: dict[RunState, int] = {
    RunState.ACCEPTED: 0,
    RunState.SCHEDULED: 1,
    RunState.RUNNING: 2,
    RunState.PAUSED: 3,
    RunState.CANCELLING: 4,
    **dict.fromkeys(RunState.FINISHED, 5),
}


class NodeStatus(enum.StrEnum):
    """Status of one node of a run (REST `NodeRun.status`)."""

    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    SKIPPED = "skipped"
    CANCELLED = "cancelled"
    WAITING = "waiting"


class TriggerType(enum.StrEnum):
    """What started a run (REST `Run.trigger.type`)."""

    API = "api"
    SCHEDULE = "schedule"
    WEBHOOK = "webhook"
    MANUAL = "manual"
    """Started in the Prefect UI (or by Prefect's API) from the workflow's deployment."""
    WORKFLOW = "workflow"
    """Started by another run's `core.start_workflow` (`trigger.id` is that run's id)."""


# --- portable column types ------------------------------------------------------------------------


def utcnow() -> datetime:
    """The current time, aware, in UTC: the only kind of datetime the store writes."""
    return datetime.now(UTC)


def new_run_id() -> str:
    """A fresh run id (UUID4 string)."""
    return str(uuid.uuid4())


class UtcDateTime(TypeDecorator[datetime]):
    """An aware UTC datetime on every dialect.

    PostgreSQL stores `timestamptz`; SQLite has no time zones, so the value is stored as naive UTC
    text (which also sorts and compares correctly) and made aware again when read. A naive datetime
    is refused rather than guessed at.
    """

    impl = DateTime
    cache_ok = True

    def __init__(self) -> None:
        super().__init__(timezone=True)

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"the store takes aware datetimes only, got naive {value!r}")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


_E = TypeVar("_E", bound=enum.StrEnum)


class StrEnumType(TypeDecorator[_E]):
    """A `StrEnum` stored as its value in a VARCHAR (no native enum type: adding a state later is
    a code change, not a migration); values are checked on the way in and out."""

    impl = String
    cache_ok = True

    def __init__(self, enum_class: type[_E], length: int = 16) -> None:
        super().__init__(length)
        self.enum_class = enum_class

    def process_bind_param(self, value: _E | str | None, dialect: Dialect) -> str | None:
        if value is None:
            return None
        return str(self.enum_class(value).value)

    def process_result_value(self, value: str | None, dialect: Dialect) -> _E | None:
        return None if value is None else self.enum_class(value)


def json_column() -> JSON:
    """Plain JSON on both dialects (PostgreSQL `json`, not `jsonb`: the service returns
    definitions and run data as written, key order included, and never queries inside them
    except for workflow tags). Python `None` is stored as SQL NULL."""
    return JSON(none_as_null=True)


def _empty_dict() -> dict[str, Any]:
    return {}


def _empty_list() -> list[Any]:
    return []


# Deterministic constraint names, so that the migrations can name (and later alter) them.
NAMING_CONVENTION: dict[str, str] = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    """Declarative base of the service's tables."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


# --- tables ---------------------------------------------------------------------------------------

TENANT_ID = String(63)
WORKFLOW_ID = String(63)
RUN_ID = String(36)


class Tenant(Base):
    """A tenant. `settings`: `allowed_pieces` (list or None), `http_allow` (list of str),
    `defaults` ({`retry`, `timeout_seconds`})."""

    __tablename__ = "tenants"

    id: Mapped[str] = mapped_column(TENANT_ID, primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    settings: Mapped[dict[str, Any]] = mapped_column(json_column(), default=_empty_dict)


class ApiKey(Base):
    """An API key of a tenant. `id` is the non-secret part of the key (its lookup prefix); `hash`
    is the keyed hash of the whole key (`api.store.crypto.hash_api_key`)."""

    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(
        TENANT_ID, ForeignKey("tenants.id", ondelete="CASCADE"), index=True
    )
    hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    last_used_at: Mapped[datetime | None] = mapped_column(UtcDateTime())


class Workflow(Base):
    """A stored workflow: the pointer to its current version plus what lists show without it."""

    __tablename__ = "workflows"

    tenant_id: Mapped[str] = mapped_column(
        TENANT_ID, ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True
    )
    id: Mapped[str] = mapped_column(WORKFLOW_ID, primary_key=True)
    current_version: Mapped[int] = mapped_column(Integer)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str | None] = mapped_column(Text)
    tags: Mapped[list[str]] = mapped_column(json_column(), default=_empty_list)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)


class WorkflowVersion(Base):
    """One immutable version of a workflow's definition."""

    __tablename__ = "workflow_versions"
    __table_args__ = (
        ForeignKeyConstraint(
            ["tenant_id", "workflow_id"],
            ["workflows.tenant_id", "workflows.id"],
            ondelete="CASCADE",
        ),
    )

    tenant_id: Mapped[str] = mapped_column(TENANT_ID, primary_key=True)
    workflow_id: Mapped[str] = mapped_column(WORKFLOW_ID, primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    definition: Mapped[dict[str, Any]] = mapped_column(json_column())
    # sha256 of the canonical JSON (`api.store.crypto.json_digest`): "identical definition" test.
    digest: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)


class Secret(Base):
    """A tenant secret, encrypted (`api.store.crypto.SecretBox`)."""

    __tablename__ = "secrets"

    tenant_id: Mapped[str] = mapped_column(
        TENANT_ID, ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True
    )
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    ciphertext: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)


class Run(Base):
    """A run the service accepted. No foreign key to `workflows`: runs stay readable after their
    workflow is deleted."""

    __tablename__ = "runs"
    __table_args__ = (
        Index("ix_runs_tenant_workflow_created", "tenant_id", "workflow_id", "created_at"),
        Index("ix_runs_tenant_state", "tenant_id", "state"),
        # The dispatcher's scan over all tenants for runs in a given state.
        Index("ix_runs_state_created", "state", "created_at"),
        Index("ix_runs_flow_run_id", "flow_run_id", unique=True),
    )

    id: Mapped[str] = mapped_column(RUN_ID, primary_key=True, default=new_run_id)
    tenant_id: Mapped[str] = mapped_column(TENANT_ID, ForeignKey("tenants.id", ondelete="CASCADE"))
    workflow_id: Mapped[str] = mapped_column(WORKFLOW_ID)
    version: Mapped[int] = mapped_column(Integer)
    state: Mapped[RunState] = mapped_column(StrEnumType(RunState), default=RunState.ACCEPTED)
    trigger_type: Mapped[TriggerType] = mapped_column(StrEnumType(TriggerType))
    trigger_id: Mapped[str | None] = mapped_column(String(255))
    parameters: Mapped[dict[str, Any]] = mapped_column(json_column(), default=_empty_dict)
    # The `trigger` template scope of the event that started the run (a webhook's payload,
    # headers and body), as received; None for runs started over REST.
    trigger_event: Mapped[dict[str, Any] | None] = mapped_column(json_column())
    output: Mapped[Any | None] = mapped_column(json_column())
    error: Mapped[Any | None] = mapped_column(json_column())
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    scheduled_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    started_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    flow_run_id: Mapped[str | None] = mapped_column(String(36))
    deployment_id: Mapped[str | None] = mapped_column(String(36))
    # How many nodes have started: the counter behind `NodeRun.seq`. Incremented with an UPDATE
    # of this row, whose row lock makes concurrent node starts of one run take distinct numbers.
    node_seq: Mapped[int] = mapped_column(Integer, default=0)
    # Set by `pauseRun`, cleared by `resumeRun`: the engine reads it before each node starts.
    pause_requested: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())


# Newest-first lists of a tenant (also the index of `tenant_id` alone). Declared outside the class
# body: a descending column needs the mapped attribute.
Index("ix_runs_tenant_created", Run.tenant_id, Run.created_at.desc())


class IdempotencyKey(Base):
    """An `Idempotency-Key` (or a webhook delivery id) seen for a workflow, and the run it
    started. Rows older than their time-to-live count as absent and are replaced."""

    __tablename__ = "idempotency_keys"

    tenant_id: Mapped[str] = mapped_column(
        TENANT_ID, ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True
    )
    workflow_id: Mapped[str] = mapped_column(WORKFLOW_ID, primary_key=True)
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    request_digest: Mapped[str] = mapped_column(String(64))
    run_id: Mapped[str] = mapped_column(RUN_ID)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)


class NodeRun(Base):
    """One node of a run (a map item is its own node, e.g. `loop[3]`). `seq` is its start order."""

    __tablename__ = "node_runs"

    run_id: Mapped[str] = mapped_column(
        RUN_ID, ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True
    )
    node_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer)
    status: Mapped[NodeStatus] = mapped_column(StrEnumType(NodeStatus))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    input: Mapped[Any | None] = mapped_column(json_column())
    output: Mapped[Any | None] = mapped_column(json_column())
    error: Mapped[Any | None] = mapped_column(json_column())
    started_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UtcDateTime())


class AuditRecord(Base):
    """One command the service handled: who (tenant, key), what, when, and how it ended. No
    foreign keys: the trail outlives what it mentions."""

    __tablename__ = "audit_records"
    __table_args__ = (Index("ix_audit_records_tenant_at", "tenant_id", "at"),)

    # SQLite auto-increments only an INTEGER PRIMARY KEY; PostgreSQL gets a 64-bit identity.
    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True
    )
    tenant_id: Mapped[str | None] = mapped_column(TENANT_ID)
    key_id: Mapped[str | None] = mapped_column(String(32))
    command: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    outcome: Mapped[str] = mapped_column(String(64))
    detail: Mapped[Any | None] = mapped_column(json_column())
