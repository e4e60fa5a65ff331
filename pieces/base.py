"""The piece contract: what a plugin declares and what it gets when it runs. Main entry: `Piece`.

A *piece* is one unit of work a workflow node can name (`"piece": "http.request"`). It is a class
with metadata (key, version, display name, category, the secrets it needs) and two pydantic models:
`Input`, whose JSON Schema the validator and the API publish and check node inputs against, and
`Output`, which documents (and, when `run` returns a model, shapes) what the node produces.

Trigger pieces (`manual`, `schedule`, `webhook`, ...) describe how runs *start*; they subclass
`TriggerPiece` and carry a `Config` model for the trigger entry's own fields.

Example:
    ```python
    class Greet(Piece["Greet.Input", "Greet.Output"]):
        key = "demo.greet"
        version = "1.0.0"
        display_name = "Greet"
        description = "Say hello."

        class Input(BaseModel):
            name: str

        class Output(BaseModel):
            greeting: str

        async def run(self, context: PieceContext, input: Input) -> Output:
            context.logger.info("greeting %s", input.name)
            return self.Output(greeting=f"hello {input.name}")
    ```
"""

from __future__ import annotations

import logging
import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Protocol, TypeVar, cast
from weakref import WeakKeyDictionary

import jsonschema_rs
from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic_core import InitErrorDetails, PydanticCustomError

if TYPE_CHECKING:
    from pieces.settings import PieceSettings

InputT = TypeVar("InputT", bound=BaseModel)
OutputT = TypeVar("OutputT")

KEY_PATTERN = r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$"
"""Action piece keys are `namespace.name` (e.g. `core.delay`, `http.request`)."""

TRIGGER_KEY_PATTERN = r"^[a-z][a-z0-9_-]*(\.[a-z][a-z0-9_-]*)*$"
"""Trigger piece keys are a bare word (`schedule`) or a dotted name for third parties."""


class PieceKind(StrEnum):
    """Whether a piece is run by a node (action) or starts runs (trigger)."""

    ACTION = "action"
    TRIGGER = "trigger"


@dataclass(frozen=True)
class SecretRequirement:
    """A tenant secret a piece reads through `PieceContext.secret`.

    Attributes:
        name: the secret's name as stored for the tenant (e.g. `ai_orchestrator_token`).
        description: what the secret is for, shown by `altlas-flows pieces show`.
        optional: the piece works without it (e.g. an unauthenticated local service).
    """

    name: str
    description: str
    optional: bool = False


class StrictModel(BaseModel):
    """Base for piece input models: unknown fields are errors, so typos are caught at validation."""

    model_config = ConfigDict(extra="forbid")


class PieceError(Exception):
    """A failure a piece reports on purpose; becomes the node's `error`.

    Args:
        message: what went wrong, for people.
        error_type: a short stable name for the kind of failure (`HttpStatusError`, `Timeout`,
            ...); defaults to the class name. Error edges and `on_error: continue` show it as
            `error.type`.
        retryable: whether another attempt could succeed. `False` skips the node's remaining retries
            (e.g. a refused URL, invalid code), `True` lets the node's retry policy apply.
        retry_after_seconds: the earliest useful retry (e.g. from an HTTP `Retry-After` header); the
            engine waits at least this long, capped by the node's `max_delay_seconds`.
        details: JSON-serialisable extra facts (status code, response excerpt, ...); the engine
            writes them to the node's log. The node's `error` record stays `{node, type,
            message, attempts}`, so put what a workflow must branch on in `error_type`.
    """

    def __init__(
        self,
        message: str,
        *,
        error_type: str | None = None,
        retryable: bool = True,
        retry_after_seconds: float | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.error_type = error_type or type(self).__name__
        self.retryable = retryable
        self.retry_after_seconds = retry_after_seconds
        self.details = details or {}


class SecretNotFoundError(PieceError):
    """A secret a node asked for is not defined for the tenant (or in the environment)."""

    def __init__(self, name: str) -> None:
        super().__init__(
            f"secret {name!r} is not defined; add it to the tenant's secrets "
            f"(or, for ad-hoc runs, pass secrets={{{name!r}: ...}} "
            f"or set ALTLAS_SECRET_{name.upper()})",
            error_type="SecretNotFound",
            retryable=False,
        )
        self.name = name


@dataclass(frozen=True)
class RunInfo:
    """What a piece (and a template, as `run`) knows about the run it belongs to.

    Times are ISO 8601 strings (UTC), as templates see them: `run.scheduled_at[:10]` is the date.
    """

    id: str
    workflow_id: str
    version: str
    tenant: str
    started_at: str
    scheduled_at: str | None = None

    def as_scope(self) -> dict[str, Any]:
        """The `run` name in templates."""
        return {
            "id": self.id,
            "workflow_id": self.workflow_id,
            "version": self.version,
            "tenant": self.tenant,
            "started_at": self.started_at,
            "scheduled_at": self.scheduled_at,
        }


class EngineServices(Protocol):
    """What control-flow pieces (`core.map`, `core.subworkflow`, `core.approval`,
    `core.start_workflow`) ask of the engine.

    Ordinary pieces never need this; it exists so that these pieces stay pieces (registered,
    documented, validated like any other) while the engine keeps ownership of runs and tasks.
    """

    async def run_piece_for_item(
        self, *, piece: str, raw_input: dict[str, Any], names: dict[str, Any], label: str
    ) -> Any:
        """Render `raw_input` with extra template `names` (e.g. `item`, `index`) and run `piece`."""
        ...

    async def run_subgraph(
        self, *, graph: dict[str, Any], names: dict[str, Any], label: str
    ) -> Any:
        """Run a `{nodes, edges, output}` sub-graph with extra template `names`; return output."""
        ...

    async def run_child_workflow(
        self, *, workflow_id: str, version: str | None, parameters: dict[str, Any]
    ) -> Any:
        """Run another workflow of the same tenant as a Prefect subflow; return its `output`."""
        ...

    async def wait_for_approval(
        self, *, message: str, input_schema: dict[str, Any] | None, timeout_seconds: float
    ) -> Any:
        """Pause the run until someone resumes it with input; return what they sent."""
        ...

    async def start_workflow(
        self,
        *,
        workflow_id: str,
        parameters: dict[str, Any],
        scheduled_at: datetime | None,
        wait: bool,
    ) -> dict[str, Any]:
        """Start a run of another stored workflow of the tenant (a run of its own, now or at
        `scheduled_at`); with `wait`, return once it ended. `{"run_id", "state",
        "scheduled_at", "output", "error"}`."""
        ...


class PieceContext(Protocol):
    """What a running piece receives besides its input. Implemented by the engine.

    Cancellation: when the run is cancelled or times out the engine cancels the piece's coroutine
    (`asyncio.CancelledError`); a piece that holds resources (processes, sockets) must release them
    in `finally`. Long loops may also poll `cancel_requested`.
    """

    @property
    def node_id(self) -> str:
        """The id of the node running this piece (inside `core.map`, `map_node[index]`)."""
        ...

    @property
    def attempt(self) -> int:
        """1 for the first try, 2 for the first retry, ..."""
        ...

    @property
    def run(self) -> RunInfo:
        """The run this piece belongs to."""
        ...

    @property
    def logger(self) -> logging.Logger | logging.LoggerAdapter[logging.Logger]:
        """Writes to the Prefect run's log, with secrets shown as `***`."""
        ...

    @property
    def settings(self) -> PieceSettings:
        """Process-wide `ALTLAS_*` settings that pieces consult (allow-lists, service URLs)."""
        ...

    @property
    def cancel_requested(self) -> bool:
        """True once the run has been asked to stop."""
        ...

    @property
    def engine(self) -> EngineServices:
        """Engine hooks for control-flow pieces."""
        ...

    async def secret(self, name: str) -> str:
        """The tenant secret `name`, which the piece must declare in `secrets`.

        Raises `SecretNotFoundError` when the tenant has no such secret, and `PieceError`
        (`UndeclaredSecret`) when the piece did not declare it. The value is redacted in logs.
        """
        ...

    def render(self, value: Any, **names: Any) -> Any:
        """Evaluate templates in `value` with the node's scope plus `names`."""
        ...


class PieceMeta:
    """Metadata shared by action and trigger pieces; read by the registry and the catalogue."""

    key: ClassVar[str]
    version: ClassVar[str] = "1.0.0"
    display_name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    category: ClassVar[str] = "general"
    kind: ClassVar[PieceKind]
    secrets: ClassVar[tuple[SecretRequirement, ...]] = ()

    @classmethod
    def title(cls) -> str:
        """The display name, or the key when none was given."""
        return cls.display_name or cls.key


class Piece(PieceMeta, ABC, Generic[InputT, OutputT]):
    """An action piece: what a node runs.

    Subclasses set `key` and the nested `Input` (a pydantic model, usually a `StrictModel`) and
    optionally `Output`, and implement `run`. One instance serves every node that names the piece,
    so keep per-run state in locals, not on `self`.

    Class attributes:
        deferred_inputs: input fields whose templates the engine must *not* evaluate before `run`
            (the piece evaluates them itself with `context.render`, e.g. `core.map` renders its
            inner `input` once per item with `item` and `index` in scope).
        default_retry: the `retry` of a node running this piece when neither the node, the
            workflow's `defaults` nor the tenant sets one (a node `retry` object; None: one
            attempt). Only failures the piece marks retryable are retried.
        default_timeout_seconds: likewise, the node's `timeout_seconds` (None: no limit).
    """

    kind: ClassVar[PieceKind] = PieceKind.ACTION
    Input: ClassVar[type[BaseModel]]
    Output: ClassVar[type[Any] | None] = None
    deferred_inputs: ClassVar[frozenset[str]] = frozenset()
    default_retry: ClassVar[dict[str, Any] | None] = None
    default_timeout_seconds: ClassVar[float | None] = None

    @classmethod
    def input_schema(cls) -> dict[str, Any]:
        """The JSON Schema of `Input`: what the validator checks node inputs against."""
        return cls.Input.model_json_schema()

    @classmethod
    def parse_input(cls, raw: Any) -> InputT:
        """The node's input as an `Input` model, by the one rule that validation also applies.

        `raw` (templates already evaluated, `deferred_inputs` left as they are) must satisfy
        the published `input_schema()` with JSON's strict types: a string is not a number,
        `"true"` is not a boolean, a number is not a string, NaN is not JSON. Only then does
        `Input` build the model, with its own validators (enums from their values, datetimes
        from strings). The validator checks literal inputs against the same schema, so a value
        refused there as a literal is refused here when a template produced it.

        Raises:
            pydantic.ValidationError: every schema violation (`loc` is the path in `raw`), or
                the model's own errors.
        """
        validator = _input_schema_validator(cls)
        try:
            errors = [] if validator.is_valid(raw) else list(validator.iter_errors(raw))
        except ValueError as exc:  # a value JSON has no form for, e.g. a range or a set
            raise _schema_error(cls, [((), f"the input is not JSON: {exc}", raw)]) from None
        if errors:
            raise _schema_error(cls, [place for e in errors for place in _places(raw, e)])
        return cast(InputT, cls.Input.model_validate(raw))

    @classmethod
    def output_schema(cls) -> dict[str, Any] | None:
        """The JSON Schema of `Output`, when the piece declares one."""
        output = cls.Output
        if output is None:
            return None
        if isinstance(output, type) and issubclass(output, BaseModel):
            return output.model_json_schema()
        from pydantic import TypeAdapter

        return TypeAdapter(output).json_schema()

    @abstractmethod
    async def run(self, context: PieceContext, input: InputT) -> OutputT:
        """Do the work and return a JSON-serialisable value (or a pydantic model)."""


_input_validators: WeakKeyDictionary[type[Any], Any] = WeakKeyDictionary()


def _input_schema_validator(piece: type[Piece[Any, Any]]) -> Any:
    """The piece's input schema, compiled once per piece class (`jsonschema_rs`: it checks a
    10,000-item value held by an unconstrained field in microseconds, without walking it)."""
    found = _input_validators.get(piece)
    if found is None:
        found = _input_validators[piece] = jsonschema_rs.validator_for(
            piece.input_schema(), validate_formats=True
        )
    return found


def _schema_message(raw: Any, error: Any) -> str:
    value: Any = raw
    for part in error.instance_path:
        try:
            value = value[part]
        except (LookupError, TypeError):
            break
    if isinstance(value, float) and not math.isfinite(value):
        # JSON has no NaN or infinity; the validator would call the value null.
        return f"{value} is not a JSON number"
    return str(error.message)


def _places(raw: Any, error: Any) -> list[tuple[tuple[str | int, ...], str, Any]]:
    """Where a schema error is, as pydantic locations: an unexpected field is reported at the
    field itself (as pydantic's `extra="forbid"` does), one per field."""
    at = tuple(error.instance_path)
    unexpected = getattr(error.kind, "unexpected", None)
    if isinstance(unexpected, list) and isinstance(error.instance, dict):
        return [
            ((*at, name), "unknown field; it is not in the input schema", error.instance[name])
            for name in unexpected
            if name in error.instance
        ]
    return [(at, _schema_message(raw, error), error.instance)]


def _schema_error(
    piece: type[Piece[Any, Any]], errors: list[tuple[tuple[str | int, ...], str, Any]]
) -> ValidationError:
    return ValidationError.from_exception_data(
        piece.Input.__name__,
        [
            InitErrorDetails(
                type=PydanticCustomError("input_schema", "{reason}", {"reason": message}),
                loc=loc,
                input=value,
            )
            for loc, message, value in errors
        ],
    )


class TriggerStrategy(StrEnum):
    """How a trigger piece starts runs; what the service does with its triggers."""

    MANUAL = "manual"
    """Runs start on request (the API, the command line, the Prefect UI)."""
    SCHEDULE = "schedule"
    """Runs start on a schedule of the workflow's Prefect deployment."""
    WEBHOOK = "webhook"
    """Runs start from HTTP deliveries to the trigger's URL."""


class TriggerPiece(PieceMeta):
    """A trigger piece: how runs of a workflow start (`manual`, `schedule`, `webhook`, ...).

    `Config` validates the trigger entry's own fields (everything except the common `id`, `type`,
    `parameters`, `filter` and `dedupe_key`); `strategy` says how its runs start. Subclasses add
    the functions the API and the deployment sync call (next fire times, request verification).
    """

    kind: ClassVar[PieceKind] = PieceKind.TRIGGER
    strategy: ClassVar[TriggerStrategy] = TriggerStrategy.MANUAL
    Config: ClassVar[type[BaseModel]]

    COMMON_FIELDS: ClassVar[frozenset[str]] = frozenset(
        {"id", "type", "parameters", "filter", "dedupe_key"}
    )

    @classmethod
    def config_schema(cls) -> dict[str, Any]:
        """The JSON Schema of `Config`."""
        return cls.Config.model_json_schema()

    @classmethod
    def parse_config(cls, trigger: dict[str, Any]) -> BaseModel:
        """Validate a trigger entry's own fields; raises `pydantic.ValidationError`."""
        own = {k: v for k, v in trigger.items() if k not in cls.COMMON_FIELDS}
        return cls.Config.model_validate(own)


AnyPiece = type[Piece[Any, Any]] | type[TriggerPiece]


MAX_JSON_DEPTH = 64
"""How deeply the data a run starts with (parameters, a webhook's payload) may nest arrays and
objects. It travels to Prefect inside the flow run's parameters, whose serialisers stop at about
250 levels, and through recursive code: deeper data could be accepted but never start its run."""


def json_depth(value: Any, *, stop_above: int = MAX_JSON_DEPTH) -> int:
    """How many arrays and objects deep `value` nests (0 for a scalar), without recursion;
    counting stops once it passes `stop_above`."""
    deepest = 0
    pending: list[tuple[Any, int]] = [(value, 0)]
    while pending:
        item, level = pending.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list | tuple):
            children = item
        else:
            continue
        level += 1
        deepest = max(deepest, level)
        if deepest > stop_above:
            break
        pending.extend((child, level) for child in children)
    return deepest


def json_output(value: Any) -> Any:
    """A piece's return value as plain JSON data (models dumped by alias, tuples as lists).

    Raises:
        PieceError: `InvalidOutput` (not retryable) when the value is not JSON: NaN or
            infinity, non-string object keys, or any other type.
    """
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json", by_alias=True)
    if value is None or isinstance(value, str | bool | int):
        return value
    if isinstance(value, float):
        if math.isfinite(value):
            return value
        raise _invalid_output(f"the number {value} is not valid JSON")
    if isinstance(value, dict):
        if not all(isinstance(key, str) for key in value):
            raise _invalid_output("object keys must be strings")
        return {key: json_output(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [json_output(item) for item in value]
    raise _invalid_output(f"a value of type {type(value).__name__} is not JSON")


def _invalid_output(reason: str) -> PieceError:
    return PieceError(f"the piece returned invalid output: {reason}", error_type="InvalidOutput",
                      retryable=False)  # fmt: skip
