"""Every error the API answers, as RFC 9457 problem details. Main entry: `Problem`.

A handler or command raises `Problem` (or one of its named forms: `NotFoundProblem`, ...);
`install_problem_handlers` turns it, FastAPI's request validation errors, unknown routes and
methods, and anything unexpected into `application/problem+json` bodies `{type, title, status,
detail}` plus `errors: [{path, message}]` where the input was at fault. `path` is a JSON Pointer
into the request body. Never a stack trace, never a secret.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

from interpreter.definition.problems import Problem as DefinitionProblem

PROBLEM_JSON = "application/problem+json"
PROBLEM_TYPE_BASE = "/problems/"
"""Problem `type`s are relative URIs `/problems/<slug>`; docs/api.md lists every slug."""

_log = logging.getLogger("altlas.api")


class Problem(Exception):
    """An error answer. `slug` names its kind (the end of `type`)."""

    def __init__(
        self,
        status: int,
        title: str,
        detail: str,
        *,
        slug: str | None = None,
        errors: Sequence[DefinitionProblem | dict[str, str]] = (),
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.title = title
        self.detail = detail
        self.slug = slug or title.lower().replace(" ", "-")
        self.errors = [e.as_dict() if isinstance(e, DefinitionProblem) else e for e in errors]
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "type": PROBLEM_TYPE_BASE + self.slug,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
        }
        if self.errors:
            body["errors"] = self.errors
        return body

    def response(self) -> JSONResponse:
        return JSONResponse(
            self.body(), status_code=self.status, media_type=PROBLEM_JSON, headers=self.headers
        )


class NotFoundProblem(Problem):
    """404. Another tenant's resource answers exactly like a missing one."""

    def __init__(self, what: str) -> None:
        super().__init__(404, "Not found", f"{what} does not exist", slug="not-found")


class ConflictProblem(Problem):
    def __init__(self, detail: str, *, slug: str = "conflict") -> None:
        super().__init__(409, "Conflict", detail, slug=slug)


class PrefectUnavailableProblem(Problem):
    """503: Prefect's API did not answer; nothing was changed."""

    def __init__(self, exc: BaseException) -> None:
        super().__init__(
            503,
            "Prefect unavailable",
            f"the Prefect API did not answer ({type(exc).__name__}); nothing was changed, "
            "try again",
            slug="prefect-unavailable",
        )


class InvalidProblem(Problem):
    """422 with the places in the request body that are at fault."""

    def __init__(
        self,
        detail: str,
        errors: Sequence[DefinitionProblem | dict[str, str]],
        *,
        slug: str = "invalid-request",
    ) -> None:
        super().__init__(422, "Unprocessable request", detail, slug=slug, errors=errors)


class UnauthorizedProblem(Problem):
    def __init__(self, detail: str) -> None:
        super().__init__(
            401,
            "Unauthorized",
            detail,
            slug="unauthorized",
            headers={"WWW-Authenticate": "Bearer"},
        )


class ForbiddenProblem(Problem):
    def __init__(self, detail: str) -> None:
        super().__init__(403, "Forbidden", detail, slug="forbidden")


def _allowed_methods(request: Request) -> list[str]:
    """The methods the app documents for this request's path (FastAPI's 405 names only the
    methods of the first route whose path matched)."""
    methods: set[str] = set()
    for template, operations in request.app.openapi()["paths"].items():
        pattern = re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(template))
        if re.fullmatch(pattern, request.url.path):
            methods |= {method.upper() for method in operations}
    if "GET" in methods:
        methods.add("HEAD")
    return sorted(methods)


def pointer(location: Sequence[str | int]) -> str:
    """A JSON Pointer (RFC 6901) for a pydantic error location inside the body."""
    parts = [str(p).replace("~", "~0").replace("/", "~1") for p in location]
    return "/" + "/".join(parts) if parts else ""


def validation_problem(exc: RequestValidationError) -> Problem:
    """FastAPI's request validation errors as a 422 whose `errors` point into the body.

    Query and path parameters are outside the body: their `path` is empty and the message
    names the parameter.
    """
    errors: list[dict[str, str]] = []
    for error in exc.errors():
        if error.get("type") == "json_invalid":
            detail = f"the request body is not valid JSON: {error.get('ctx', {}).get('error')}"
            return Problem(400, "Bad request", detail, slug="bad-json")
        location = list(error.get("loc", ()))
        source = location.pop(0) if location else "body"
        message = str(error.get("msg", "invalid"))
        if source == "body" and not location and isinstance(error.get("input"), str | bytes):
            # The body was not parsed: it did not say it is JSON.
            message += "; send JSON with the header `Content-Type: application/json`"
        if source == "body":
            errors.append({"path": pointer(location), "message": message})
        else:
            name = ".".join(str(p) for p in location)
            errors.append({"path": "", "message": f"{source} parameter `{name}`: {message}"})
    return InvalidProblem("the request is invalid; see `errors`", errors)


def install_problem_handlers(app: FastAPI) -> None:
    """Answer every error of `app` as a problem."""

    @app.exception_handler(Problem)
    async def _problem(request: Request, exc: Problem) -> JSONResponse:
        return exc.response()

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return validation_problem(exc).response()

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        titles = {400: "Bad request", 404: "Not found", 405: "Method not allowed"}
        slugs = {400: "bad-json", 404: "not-found", 405: "method-not-allowed"}
        title = titles.get(exc.status_code, "Error")
        headers = dict(exc.headers or {})
        if exc.status_code == 405:  # every method of the path (FastAPI names only one route's)
            headers["Allow"] = ", ".join(_allowed_methods(request))
        detail = (
            f"no route {request.url.path}"
            if exc.status_code == 404
            else f"{request.method} is not allowed on {request.url.path}"
            if exc.status_code == 405
            else "the request body could not be parsed as JSON (malformed, or nested too deeply)"
            if exc.status_code == 400
            else str(exc.detail)
        )
        slug = slugs.get(exc.status_code, "error")
        return Problem(exc.status_code, title, detail, slug=slug, headers=headers).response()

    @app.exception_handler(RecursionError)
    async def _too_deep(request: Request, exc: RecursionError) -> JSONResponse:
        detail = "the request body is nested too deeply"
        return Problem(400, "Bad request", detail, slug="too-deep").response()

    @app.exception_handler(OperationalError)
    async def _busy(request: Request, exc: OperationalError) -> JSONResponse:
        if "locked" not in str(exc.orig) and "busy" not in str(exc.orig):
            return await _unexpected(request, exc)
        detail = "the database is busy with another change; try again"
        busy = Problem(503, "Busy", detail, slug="busy", headers={"Retry-After": "1"})
        return busy.response()

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        _log.exception("unexpected error answering %s %s", request.method, request.url.path)
        detail = "the server failed to answer; the error is in its log"
        return Problem(500, "Internal server error", detail, slug="internal").response()


_STATUS_TEXT = {
    400: "The request body is not valid JSON, or is nested too deeply.",
    401: "No API key, or an unknown or revoked one.",
    403: "The key may not do this (the tenant routes need the operator key).",
    404: "No such resource for this tenant (another tenant's answers the same).",
    405: "The method is not allowed on this path.",
    409: "The resource's state does not allow this.",
    413: "The request body is larger than ALTLAS_API_MAX_BODY_BYTES.",
    422: "The request is invalid; `errors` point into the body.",
    503: "A part the service needs (Prefect, the database) did not answer, or is busy.",
}


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` documenting each status with the problem schema."""
    schema = {"$ref": "#/components/schemas/Problem"}  # added to the components by api.main
    return {
        status: {
            "description": _STATUS_TEXT[status],
            "content": {PROBLEM_JSON: {"schema": schema}},
        }
        for status in statuses
    }
