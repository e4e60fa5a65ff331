"""Shapes shared by every resource: the list page and the problem body."""

from __future__ import annotations

from typing import Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field

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


class RequestModel(BaseModel):
    """Request bodies refuse fields they do not know: a typo is an error, not ignored."""

    model_config = ConfigDict(extra="forbid")
