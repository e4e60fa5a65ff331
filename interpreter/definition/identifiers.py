"""Identifier patterns: workflow ids and tenant ids, and `check_tenant_id`.

Main entries: `WORKFLOW_ID_PATTERN`, `TENANT_ID_PATTERN`, `check_tenant_id(value)`.

The workflow id pattern is read from the format's JSON Schema (`definitions/workflow.schema.json`,
`/properties/id/pattern`), so the schema file stays the one place it is written. Tenant ids
follow the same pattern (REST API contract): they appear next to workflow ids in Prefect tags,
artifact keys and URLs (`/v1/hooks/{tenant}/{workflow_id}/...`), so they must be slugs too.
`run_workflow`, `altlas-flows run --tenant` and the REST service all call `check_tenant_id`.
"""

from __future__ import annotations

import re
from typing import Any

from interpreter.definition.schema import workflow_schema


def _schema_pattern() -> str:
    schema: dict[str, Any] = workflow_schema()
    pattern = schema.get("properties", {}).get("id", {}).get("pattern")
    if not isinstance(pattern, str):
        raise RuntimeError("definitions/workflow.schema.json has no /properties/id/pattern")
    return pattern


WORKFLOW_ID_PATTERN = _schema_pattern()
"""`^[a-z][a-z0-9-]{0,62}$`: a lower-case letter, then up to 62 lower-case letters, digits, '-'."""

TENANT_ID_PATTERN = WORKFLOW_ID_PATTERN
"""Tenant ids follow the workflow id pattern."""

_TENANT_ID = re.compile(TENANT_ID_PATTERN)


def is_tenant_id(value: object) -> bool:
    """Whether `value` is a valid tenant id."""
    # fullmatch: `$` would also accept a trailing newline.
    return isinstance(value, str) and _TENANT_ID.fullmatch(value) is not None


def check_tenant_id(value: object, *, field: str = "tenant") -> str:
    """Return `value` if it is a valid tenant id; else raise `ValueError` saying how to fix it.

    Args:
        value: the tenant id to check.
        field: what the caller calls it in the message (`tenant`, `--tenant`, ...).

    Raises:
        ValueError: naming `field`, the value and the pattern; e.g. for `Acme_Corp`:
            "tenant 'Acme_Corp' is not a valid tenant id: ... (pattern ^[a-z][a-z0-9-]{0,62}$);
            e.g. 'acme-corp'".
    """
    if isinstance(value, str) and is_tenant_id(value):
        return value
    suggestion = _suggest(value) if isinstance(value, str) else None
    hint = f"; e.g. {suggestion!r}" if suggestion else ""
    shown = repr(value) if isinstance(value, str) else f"of type {type(value).__name__}"
    raise ValueError(
        f"{field} {shown} is not a valid tenant id: use a lower-case letter, then up to 62 "
        f"lower-case letters, digits or '-' (pattern {TENANT_ID_PATTERN}){hint}"
    )


def _suggest(value: str) -> str | None:
    """A valid id close to `value` (lower-cased, other characters as '-'), if there is one."""
    slug = re.sub(r"[^a-z0-9-]+", "-", value.strip().lower()).strip("-")
    return slug if is_tenant_id(slug) else None
