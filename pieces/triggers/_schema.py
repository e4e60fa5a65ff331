"""JSON Schema touches shared by the trigger `Config` models: `not_null`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def not_null(**keywords: Any) -> Callable[[dict[str, Any]], None]:
    """A `json_schema_extra` for an optional field that must not be null when given.

    Pydantic writes `"default": null` for such a field, which its own schema does not admit,
    and drops or misplaces constraints it cannot put inside the union (`pattern`, `ge`); this
    removes the default, writes `ge` as `minimum`, and adds `keywords` (e.g. `pattern=...`).
    """

    def tidy(schema: dict[str, Any]) -> None:
        schema.pop("default", None)
        if "ge" in schema:
            schema["minimum"] = schema.pop("ge")
        schema.update(keywords)

    return tidy
