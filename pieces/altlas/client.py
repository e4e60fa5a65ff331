"""The HTTP client both ALT_LAS service pieces share. Main entry: `call_service`.

It owns everything the AI Orchestrator and the OS Integration pieces have in common, as documented
in `docs/altlas-services.md`: the base URL from settings, the bearer token from a tenant secret, the
`X-Altlas-Tenant` / `X-Altlas-Run-Id` / `Idempotency-Key` headers, one time-out for the whole
exchange, a cap on the answer's size, JSON decoding, and the mapping of every failure onto a
`PieceError` with a stable `error_type`:

| failure                                              | `error_type`         | retryable |
|------------------------------------------------------|----------------------|-----------|
| connection refused/reset, 408, 409, 429, 502-504     | `ServiceUnavailable` | yes       |
| other 5xx                                            | `ServiceError`       | yes       |
| other 3xx and 4xx                                    | `ServiceError`       | no        |
| 401, 403                                             | `Unauthorized`       | no        |
| no complete answer within the time-out               | `Timeout`            | yes       |
| answer too large, not JSON, not an object            | `InvalidResponse`    | no        |

These calls go to operator-configured URLs, so they do not pass through `http.request`'s SSRF
policy. Tokens never appear in messages, details or logs.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import quote

import httpx

from pieces.base import PieceContext, PieceError, SecretNotFoundError, SecretRequirement
from pieces.settings import PieceSettings

RETRYABLE_4XX = frozenset({408, 409, 429})
"""4xx statuses that mean "not now" rather than "never": time-out, idempotent request still in
progress, rate limit."""

UNAVAILABLE_STATUSES = RETRYABLE_4XX | {502, 503, 504}
ERROR_BODY_LIMIT = 64 * 1024
"""How much of an error answer is read to find its `error.code` and `error.message`."""
MESSAGE_LIMIT = 500


@dataclass(frozen=True)
class AltlasService:
    """One ALT_LAS service as the engine sees it.

    Attributes:
        name: for people, in messages and logs ("AI Orchestrator").
        secret: the optional tenant secret holding the bearer token.
        base_url: reads the service's base URL from the settings.
    """

    name: str
    secret: SecretRequirement
    base_url: Callable[[PieceSettings], str]


def idempotency_key(run_id: str, node_id: str) -> str:
    """The `Idempotency-Key` of a node's call: the same for every attempt of that node in that run.

    Args:
        run_id: the run's id (`context.run.id`).
        node_id: the node's id (`context.node_id`; inside `core.map`, `node[index]`).

    Returns:
        `"<run_id>:<node_id>"`, with any character outside `A-Za-z0-9-._~:[]` percent-encoded so
        that the key is always a valid header value.

    Examples:
        >>> idempotency_key("6f1c-run", "summarise")
        '6f1c-run:summarise'
        >>> idempotency_key("r1", "each[3]")
        'r1:each[3]'
    """
    return f"{quote(run_id, safe='')}:{quote(node_id, safe='[]')}"


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a `Retry-After` header (delta-seconds or HTTP-date); `None` if absent.

    Examples:
        >>> parse_retry_after("7")
        7.0
        >>> parse_retry_after("garbage") is None
        True
    """
    if value is None:
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


async def call_service(
    service: AltlasService, context: PieceContext, *, path: str, body: dict[str, Any]
) -> dict[str, Any]:
    """POST `body` as JSON to `path` of `service` and return the decoded JSON object it answers.

    Args:
        service: which service (base URL setting, token secret, name for messages).
        context: the node's context: settings, tenant secret, run and node ids, logger.
        path: the endpoint below the base URL, e.g. `/v1/tasks`.
        body: the request document.

    Returns:
        The service's answer, a JSON object.

    Raises:
        PieceError: with `error_type` `ServiceUnavailable`, `ServiceError`, `Unauthorized`,
            `Timeout` or `InvalidResponse` (see the module docstring for which are retryable).
    """
    settings = context.settings
    token = await _token(service, context)
    headers = {
        "Accept": "application/json",
        "User-Agent": "altlas-workflow-engine",
        "X-Altlas-Tenant": context.run.tenant,
        "X-Altlas-Run-Id": context.run.id,
        "Idempotency-Key": idempotency_key(context.run.id, context.node_id),
    }
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    where = _where(service, path)
    url = service.base_url(settings).rstrip("/") + path
    timeout = settings.service_timeout_seconds
    started = time.monotonic()
    try:
        async with (
            asyncio.timeout(timeout),
            httpx.AsyncClient(timeout=timeout, follow_redirects=False, trust_env=False) as client,
            client.stream("POST", url, json=body, headers=headers) as response,
        ):
            if not response.is_success:
                raw, _ = await _read_capped(response, ERROR_BODY_LIMIT)
                raise _status_error(service, path, response, raw, sent_token=token is not None)
            raw, complete = await _read_capped(response, settings.service_max_response_bytes)
    except (TimeoutError, httpx.TimeoutException):
        raise PieceError(
            f"{where}: no complete answer within {timeout:g} s "
            "(ALTLAS_SERVICE_TIMEOUT_SECONDS); the retry reuses the same Idempotency-Key",
            error_type="Timeout",
            details=_details(service, path, timeout_seconds=timeout),
        ) from None
    except httpx.TransportError as exc:
        raise PieceError(
            f"{where}: could not reach the service ({type(exc).__name__})",
            error_type="ServiceUnavailable",
            details=_details(service, path),
        ) from None
    elapsed_ms = (time.monotonic() - started) * 1000
    replayed = response.headers.get("Idempotent-Replayed", "").lower() == "true"
    context.logger.info(
        "%s -> %d in %.0f ms%s",
        where,
        response.status_code,
        elapsed_ms,
        " (replayed by the service)" if replayed else "",
    )
    if not complete:
        raise _invalid(
            where,
            service,
            path,
            f"the answer is larger than {settings.service_max_response_bytes} bytes "
            "(ALTLAS_SERVICE_MAX_RESPONSE_BYTES)",
        )
    return _decode_object(raw, where, service, path)


async def _token(service: AltlasService, context: PieceContext) -> str | None:
    try:
        value = await context.secret(service.secret.name)
    except SecretNotFoundError:
        return None  # the secret is optional: the service may be unauthenticated
    return value.strip() or None


async def _read_capped(response: httpx.Response, limit: int) -> tuple[bytes, bool]:
    """Read at most `limit` decoded bytes; the flag says whether the whole body fitted."""
    declared = response.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > limit and "Content-Encoding" not in response.headers:
        return b"", False
    buffer = bytearray()
    async for chunk in response.aiter_bytes():
        buffer += chunk
        if len(buffer) > limit:
            return bytes(buffer[:limit]), False
    return bytes(buffer), True


def _decode_object(raw: bytes, where: str, service: AltlasService, path: str) -> dict[str, Any]:
    try:
        value = json.loads(raw, parse_constant=_refuse_constant)
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, NaN/Infinity
        raise _invalid(where, service, path, f"the answer is not JSON ({exc})") from None
    if not isinstance(value, dict):
        raise _invalid(
            where, service, path, f"the answer is JSON {type(value).__name__}, not an object"
        )
    return value


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _status_error(
    service: AltlasService, path: str, response: httpx.Response, raw: bytes, *, sent_token: bool
) -> PieceError:
    status = response.status_code
    code, text = _error_fields(raw)
    summary = f"{_where(service, path)} answered {status}" + (f" ({code})" if code else "")
    if text:
        summary += f": {text}"
    details = _details(service, path, status=status, code=code)
    if status in (401, 403):
        secret = service.secret.name
        hint = (
            f"the token in tenant secret {secret!r} was refused"
            if sent_token
            else f"no token was sent: set the tenant secret {secret!r}"
        )
        return PieceError(
            f"{summary}; {hint}", error_type="Unauthorized", retryable=False, details=details
        )
    if 300 <= status < 400:
        summary += "; redirects are not followed: point the base URL setting at the service itself"
    retryable = status in UNAVAILABLE_STATUSES or status >= 500
    return PieceError(
        summary,
        error_type="ServiceUnavailable" if status in UNAVAILABLE_STATUSES else "ServiceError",
        retryable=retryable,
        retry_after_seconds=(
            parse_retry_after(response.headers.get("Retry-After")) if retryable else None
        ),
        details=details,
    )


def _error_fields(raw: bytes) -> tuple[str | None, str]:
    """`error.code` and `error.message` of a documented error answer, else a text excerpt."""
    try:
        error = json.loads(raw).get("error")
        code, message = error.get("code"), error.get("message")
    except (ValueError, AttributeError):
        return None, raw[:200].decode("utf-8", "replace").strip()
    code = code if isinstance(code, str) else None
    return code, str(message or "")[:MESSAGE_LIMIT]


def _invalid(where: str, service: AltlasService, path: str, reason: str) -> PieceError:
    return PieceError(
        f"{where}: {reason}",
        error_type="InvalidResponse",
        retryable=False,
        details=_details(service, path),
    )


def _where(service: AltlasService, path: str) -> str:
    """How messages and logs name a call: `AI Orchestrator POST /v1/tasks` (never host or token)."""
    return f"{service.name} POST {path}"


def _details(service: AltlasService, path: str, **extra: Any) -> dict[str, Any]:
    found = {"service": service.name, "method": "POST", "path": path, **extra}
    return {k: v for k, v in found.items() if v is not None}
