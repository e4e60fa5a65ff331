"""Tenant and workflow id patterns: one source (the schema file), one check for every entry."""

from __future__ import annotations

import re

import pytest

from interpreter.definition.identifiers import (
    TENANT_ID_PATTERN,
    WORKFLOW_ID_PATTERN,
    check_tenant_id,
    is_tenant_id,
)
from interpreter.definition.schema import workflow_schema


def test_the_patterns_come_from_the_schema_file() -> None:
    assert workflow_schema()["properties"]["id"]["pattern"] == WORKFLOW_ID_PATTERN
    assert TENANT_ID_PATTERN == WORKFLOW_ID_PATTERN == "^[a-z][a-z0-9-]{0,62}$"


@pytest.mark.parametrize("tenant", ["default", "acme-corp", "a", "a1-2", "a" * 63])
def test_valid_tenant_ids_are_returned_unchanged(tenant: str) -> None:
    assert check_tenant_id(tenant) == tenant
    assert is_tenant_id(tenant)


@pytest.mark.parametrize(
    ("tenant", "suggestion"),
    [
        ("Acme_Corp", "acme-corp"),  # was silently turned into acme-corp in the artifact key
        ("acme corp", "acme-corp"),
        ("acme\n", "acme"),  # `$` alone would accept the trailing newline
        ("1acme", "1acme"),  # no valid suggestion: none given
        ("", None),
        ("a" * 64, None),
        ("-acme", "acme"),
        ("acme_", "acme"),
    ],
)
def test_invalid_tenant_ids_are_refused_with_field_pattern_and_a_suggestion(
    tenant: str, suggestion: str | None
) -> None:
    with pytest.raises(ValueError, match="is not a valid tenant id") as caught:
        check_tenant_id(tenant)
    message = str(caught.value)
    assert message.startswith(f"tenant {tenant!r} is not a valid tenant id")
    assert f"(pattern {TENANT_ID_PATTERN})" in message
    if suggestion and re.fullmatch(TENANT_ID_PATTERN, suggestion):
        assert message.endswith(f"e.g. {suggestion!r}")
    else:
        assert "e.g." not in message
    assert not is_tenant_id(tenant)


def test_the_field_name_is_the_callers() -> None:
    with pytest.raises(ValueError, match=r"^--tenant 'X' is not a valid tenant id"):
        check_tenant_id("X", field="--tenant")
    with pytest.raises(ValueError, match=r"^tenant of type int is not a valid tenant id"):
        check_tenant_id(5)
