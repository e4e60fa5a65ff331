"""The typed model of a valid definition: `Workflow`, `Plan`, `Node`, `Edge`, `RetryPolicy`.

`Workflow.parse` runs only on documents the validator accepted. It normalises shorthands into one
canonical form (omitted fields filled in, and each node's `retry` and `timeout_seconds` resolved
through the layers of `NodeDefaults`), so the engine never looks at defaults again.

Execution settings are layered, the most specific winning: what the node's piece declares
(`Piece.default_retry`, `Piece.default_timeout_seconds`), then the tenant's defaults, then the
workflow's `defaults`, then the node's own fields. Each of `retry` and `timeout_seconds` comes
whole from the most specific layer that sets it (a `retry` object is not merged field by field).
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Literal

from interpreter.definition.graph import Graph
from pieces.base import TriggerPiece
from pieces.registry import PieceRegistry

DEFAULT_RETRY_DELAY_SECONDS = 1.0


@dataclass(frozen=True)
class RetryPolicy:
    """How a node is retried. `max_attempts` counts every try, the first included."""

    max_attempts: int = 1
    delay_seconds: float = DEFAULT_RETRY_DELAY_SECONDS
    backoff: Literal["fixed", "exponential"] = "fixed"
    max_delay_seconds: float | None = None
    jitter: float = 0.0

    @classmethod
    def parse(cls, raw: dict[str, Any] | None) -> RetryPolicy:
        """From a definition's `retry` object (already schema-valid)."""
        if not raw:
            return cls()
        return cls(
            max_attempts=int(raw.get("max_attempts", 1)),
            delay_seconds=float(raw.get("delay_seconds", DEFAULT_RETRY_DELAY_SECONDS)),
            backoff=raw.get("backoff", "fixed"),
            max_delay_seconds=(
                float(raw["max_delay_seconds"])
                if raw.get("max_delay_seconds") is not None
                else None
            ),
            jitter=float(raw.get("jitter", 0.0)),
        )

    def delay_before(self, retry_number: int) -> float:
        """The nominal wait before retry `retry_number` (1 = the first retry), without jitter."""
        delay = self.delay_seconds
        if self.backoff == "exponential":
            delay *= 2 ** (retry_number - 1)
        if self.max_delay_seconds is not None:
            delay = min(delay, self.max_delay_seconds)
        return delay

    def wait_before(self, retry_number: int, rng: random.Random | None = None) -> float:
        """The wait before retry `retry_number`, jitter applied (never above the cap)."""
        delay = self.delay_before(retry_number)
        if self.jitter:
            delay *= (rng or random).uniform(1 - self.jitter, 1 + self.jitter)
            if self.max_delay_seconds is not None:
                delay = min(delay, self.max_delay_seconds)
        return round(delay, 3)

    def delays(self, rng: random.Random | None = None) -> list[float]:
        """The wait before each retry, jitter applied."""
        return [self.wait_before(number, rng) for number in range(1, self.max_attempts)]


@dataclass(frozen=True)
class ExecutionDefaults:
    """One layer of execution settings: a `retry` and a `timeout_seconds`, either unset."""

    retry: RetryPolicy | None = None
    timeout_seconds: float | None = None

    @classmethod
    def parse(cls, raw: Mapping[str, Any] | None) -> ExecutionDefaults:
        """From a `{"retry": {...}, "timeout_seconds": n}` object (a workflow's `defaults`)."""
        raw = raw or {}
        retry = RetryPolicy.parse(raw["retry"]) if raw.get("retry") is not None else None
        timeout = raw.get("timeout_seconds")
        return cls(retry=retry, timeout_seconds=float(timeout) if timeout is not None else None)

    def over(self, lower: ExecutionDefaults) -> ExecutionDefaults:
        """This layer on top of `lower`: each setting from here when set, else from `lower`."""
        return ExecutionDefaults(
            retry=self.retry if self.retry is not None else lower.retry,
            timeout_seconds=(
                self.timeout_seconds if self.timeout_seconds is not None else lower.timeout_seconds
            ),
        )


NO_DEFAULTS = ExecutionDefaults()


@dataclass(frozen=True)
class NodeDefaults:
    """The layers under a node's own fields: its piece's, the tenant's, the workflow's."""

    workflow: ExecutionDefaults = NO_DEFAULTS
    tenant: ExecutionDefaults = NO_DEFAULTS
    pieces: Mapping[str, ExecutionDefaults] = field(default_factory=dict)

    def for_piece(self, key: str) -> ExecutionDefaults:
        return self.workflow.over(self.tenant.over(self.pieces.get(key, NO_DEFAULTS)))


def piece_defaults(registry: PieceRegistry) -> dict[str, ExecutionDefaults]:
    """What each action piece of `registry` declares as its nodes' defaults."""
    return _piece_defaults(registry)


@lru_cache(maxsize=16)
def _piece_defaults(registry: PieceRegistry) -> dict[str, ExecutionDefaults]:
    found: dict[str, ExecutionDefaults] = {}
    for piece in registry.actions():
        timeout = piece.default_timeout_seconds
        if piece.default_retry is not None or timeout is not None:
            found[piece.key] = ExecutionDefaults(
                retry=RetryPolicy.parse(piece.default_retry) if piece.default_retry else None,
                timeout_seconds=float(timeout) if timeout is not None else None,
            )
    return found


@dataclass(frozen=True)
class Node:
    """One node: a piece to run, with its raw (template-bearing) input and its policies."""

    id: str
    piece: str
    input: dict[str, Any]
    retry: RetryPolicy
    timeout_seconds: float | None
    on_error: Literal["fail", "continue"]
    join: Literal["any", "all"]
    index: int


@dataclass(frozen=True)
class Edge:
    """A dependency: `target` may run after `source` succeeds (or fails, for error edges)."""

    source: str
    target: str
    when: str | None
    on: Literal["success", "error"]
    index: int


@dataclass(frozen=True)
class Plan:
    """A graph of nodes and edges with an `output` template: a workflow body or a map sub-graph."""

    nodes: dict[str, Node]
    edges: tuple[Edge, ...]
    output: Any
    graph: Graph = field(compare=False)
    outgoing: dict[str, tuple[Edge, ...]] = field(compare=False)
    incoming: dict[str, tuple[Edge, ...]] = field(compare=False)

    @classmethod
    def parse(cls, raw: dict[str, Any], *, defaults: NodeDefaults | None = None) -> Plan:
        """From a schema-valid `{nodes, edges, output}` object, with the defaults applied."""
        defaults = defaults or NodeDefaults()
        nodes: dict[str, Node] = {}
        for index, item in enumerate(raw["nodes"]):
            layer = ExecutionDefaults.parse(item).over(defaults.for_piece(item["piece"]))
            nodes[item["id"]] = Node(
                id=item["id"],
                piece=item["piece"],
                input=item.get("input", {}),
                retry=layer.retry or RetryPolicy(),
                timeout_seconds=layer.timeout_seconds,
                on_error=item.get("on_error", "fail"),
                join=item.get("join", "any"),
                index=index,
            )
        edges = tuple(
            Edge(e["from"], e["to"], e.get("when"), e.get("on", "success"), index)
            for index, e in enumerate(raw.get("edges", []))
        )
        outgoing: dict[str, list[Edge]] = {n: [] for n in nodes}
        incoming: dict[str, list[Edge]] = {n: [] for n in nodes}
        for edge in edges:
            outgoing[edge.source].append(edge)
            incoming[edge.target].append(edge)
        return cls(
            nodes=nodes,
            edges=edges,
            output=raw.get("output"),
            graph=Graph(list(nodes), [(e.source, e.target) for e in edges]),
            outgoing={n: tuple(v) for n, v in outgoing.items()},
            incoming={n: tuple(v) for n, v in incoming.items()},
        )


@dataclass(frozen=True)
class Trigger:
    """One trigger entry; `fields` holds its type-specific fields (validated by its piece)."""

    id: str
    type: str
    fields: dict[str, Any]
    parameters: dict[str, Any]
    filter: str | None
    dedupe_key: str | None
    index: int


def parse_triggers(document: dict[str, Any]) -> tuple[Trigger, ...]:
    """The `triggers` of a valid document, in order (also without parsing the rest of it)."""
    return tuple(
        Trigger(
            id=t["id"],
            type=t["type"],
            fields={k: v for k, v in t.items() if k not in TriggerPiece.COMMON_FIELDS},
            parameters=t.get("parameters", {}),
            filter=t.get("filter"),
            dedupe_key=t.get("dedupe_key"),
            index=index,
        )
        for index, t in enumerate(document.get("triggers", []))
    )


@dataclass(frozen=True)
class Workflow:
    """A whole, valid workflow definition."""

    id: str
    name: str
    description: str
    tags: tuple[str, ...]
    parameters_schema: dict[str, Any] | None
    triggers: tuple[Trigger, ...]
    timeout_seconds: float | None
    concurrency_limit: int | None
    plan: Plan
    defaults: NodeDefaults
    document: dict[str, Any] = field(compare=False, repr=False)

    @classmethod
    def parse(
        cls,
        document: dict[str, Any],
        *,
        registry: PieceRegistry | None = None,
        tenant_defaults: ExecutionDefaults = NO_DEFAULTS,
    ) -> Workflow:
        """From a document `interpreter.validate` accepted.

        Args:
            document: the definition.
            registry: the pieces whose declared defaults apply (None: no piece defaults).
            tenant_defaults: the tenant's layer, between the pieces' and the workflow's.
        """
        defaults = NodeDefaults(
            workflow=ExecutionDefaults.parse(document.get("defaults")),
            tenant=tenant_defaults,
            pieces=piece_defaults(registry) if registry is not None else {},
        )
        return cls(
            id=document["id"],
            name=document.get("name") or document["id"],
            description=document.get("description", ""),
            tags=tuple(document.get("tags", [])),
            parameters_schema=document.get("parameters"),
            triggers=parse_triggers(document),
            timeout_seconds=document.get("timeout_seconds"),
            concurrency_limit=document.get("concurrency", {}).get("limit"),
            plan=Plan.parse(document, defaults=defaults),
            defaults=defaults,
            document=document,
        )

    def subplan(self, raw: dict[str, Any]) -> Plan:
        """A `core.map` sub-graph, with this workflow's defaults applied to its nodes."""
        return Plan.parse(raw, defaults=self.defaults)
