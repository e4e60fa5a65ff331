"""Shapes shared by every resource: the list page and the problem body."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any, Generic, TypeVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

T = TypeVar("T")


class Page(BaseModel, Generic[T]):
    """A page of a list: `count` is the total matching, not the page's length."""

    data: list[T]
    count: int = Field(ge=0)


class ProblemItem(BaseModel):
    """One place in the request at fault: a JSON Pointer into the body and what is wrong."""

    path: str
    message: str


class ProblemBody(BaseModel):
    """An RFC 9457 problem: every error the API answers has this body."""

    model_config = ConfigDict(title="Problem")

    type: str = Field(description="`/problems/<slug>`; docs/api.md lists every slug.")
    title: str
    status: int
    detail: str
    errors: list[ProblemItem] | None = None


MAX_VERSION = 2**31 - 1
"""Versions are 32-bit integers in the store: a larger number names no version."""

_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")


def _rfc3339(value: Any) -> Any:
    """An RFC 3339 date-time with its offset, as an aware datetime in UTC; nothing else."""
    if isinstance(value, datetime):
        text = value.isoformat()
    elif isinstance(value, str):
        text = value
    else:
        raise ValueError("give a date-time as RFC 3339 text, e.g. 2026-12-01T09:00:00Z")
    if not _RFC3339.match(text):
        raise ValueError("not an RFC 3339 date-time with an offset, e.g. 2026-12-01T09:00:00Z")
    try:
        return datetime.fromisoformat(text.replace("z", "Z")).astimezone(UTC)
    except (ValueError, OverflowError):
        raise ValueError("this date-time does not exist in UTC") from None


Rfc3339 = Annotated[datetime, BeforeValidator(_rfc3339)]
"""A time as the API takes it: RFC 3339 with an offset, held in UTC."""


class RequestModel(BaseModel):
    """Request bodies refuse fields they do not know: a typo is an error, not ignored."""

    model_config = ConfigDict(extra="forbid")
