"""Builders for small workflow definitions in tests."""

from __future__ import annotations

import itertools
from typing import Any

_ids = itertools.count()


def node(node_id: str, piece: str = "core.transform", **fields: Any) -> dict[str, Any]:
    """A node; `value=` is shorthand for `core.transform`'s input."""
    if "value" in fields:
        fields["input"] = {"value": fields.pop("value")}
    return {"id": node_id, "piece": piece, **fields}


def edge(source: str, target: str, **fields: Any) -> dict[str, Any]:
    return {"from": source, "to": target, **fields}


def workflow(
    nodes: list[dict[str, Any]], edges: list[dict[str, Any]] = (), **top: Any
) -> dict[str, Any]:  # type: ignore[assignment]
    """A valid top-level definition with a fresh id."""
    return {
        "format": 1,
        "id": top.pop("id", f"test-{next(_ids)}"),
        "nodes": nodes,
        "edges": list(edges),
        **top,
    }
