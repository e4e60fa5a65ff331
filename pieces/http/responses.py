"""Turning an HTTP response into a node's output or error. Main entry: `status_error`.

Owns `expect_status` (which statuses count as success), the body as the workflow sees it (parsed
JSON or text), `Retry-After` parsing, and which failing statuses are worth another attempt.
"""

from __future__ import annotations

import codecs
import json
import re
from collections.abc import Sequence
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from pieces.base import PieceError

STATUS_PATTERN = r"^([1-5]xx|[1-5][0-9]{2}(-[1-5][0-9]{2})?)$"
"""An `expect_status` string: a class (`2xx`), one status (`404`) or a range (`200-204`)."""

StatusRange = tuple[int, int]

RETRY_AFTER_STATUSES = frozenset({429, 503})
BODY_EXCERPT_CHARS = 1000


def status_ranges(spec: int | str | Sequence[int | str]) -> tuple[StatusRange, ...]:
    """Read an `expect_status` value into inclusive ranges.

    Args:
        spec: an int (`201`), a string (`2xx`, `404`, `200-204`) or a list of them.

    Returns:
        Inclusive `(low, high)` pairs, e.g. `((200, 299), (404, 404))` for `["2xx", 404]`.

    Raises:
        ValueError: an unreadable item, a status outside 100-599, or a reversed range.
    """
    items = [spec] if isinstance(spec, int | str) else list(spec)
    if not items:
        raise ValueError("expect_status must name at least one status")
    ranges: list[StatusRange] = []
    for item in items:
        if isinstance(item, int):
            low = high = item
        elif re.match(STATUS_PATTERN, item):
            if item.endswith("xx"):
                low, high = int(item[0]) * 100, int(item[0]) * 100 + 99
            else:
                low_text, _, high_text = item.partition("-")
                low, high = int(low_text), int(high_text or low_text)
        else:
            raise ValueError(f"expect_status item {item!r}: use 404, '2xx' or '200-204'")
        if not 100 <= low <= high <= 599:
            raise ValueError(f"expect_status item {item!r} is not a status range within 100-599")
        ranges.append((low, high))
    return tuple(ranges)


def describe_ranges(ranges: Sequence[StatusRange]) -> str:
    """`2xx, 404` style text for messages."""
    parts = []
    for low, high in ranges:
        if low == high:
            parts.append(str(low))
        elif low % 100 == 0 and high == low + 99:
            parts.append(f"{low // 100}xx")
        else:
            parts.append(f"{low}-{high}")
    return ", ".join(parts)


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a `Retry-After` header (delay-seconds or an HTTP date).

    Args:
        value: the header value, or `None` when absent.
        now: the current time (for tests); defaults to the clock.

    Returns:
        Seconds (0 for a date in the past), or `None` when absent or unreadable.

    Examples:
        ```python
        parse_retry_after("120")  # 120.0
        parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=...)  # seconds until then
        ```
    """
    if value is None:
        return None
    text = value.strip()
    if text.isascii() and text.isdigit():
        return float(int(text))
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def is_retryable_status(status: int) -> bool:
    """408, 429 and 5xx (except 501 and 505) may succeed later; other statuses will not."""
    return status in (408, 429) or (status >= 500 and status not in (501, 505))


def _is_json(media_type: str) -> bool:
    return media_type == "application/json" or media_type.endswith("+json")


def response_text(response: httpx.Response, body: bytes) -> str:
    """The body as text in the response's charset (UTF-8 when none or unknown)."""
    charset = response.charset_encoding or "utf-8"
    try:
        codecs.lookup(charset)
    except LookupError:
        charset = "utf-8"
    return body.decode(charset, errors="replace")


def response_body(response: httpx.Response, body: bytes) -> Any:
    """What the node outputs as `body`: parsed JSON for a JSON media type, else text.

    A JSON media type whose body does not parse is returned as text (the status decides success,
    not the body). An empty body is `""`.
    """
    media_type = response.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if body and _is_json(media_type):
        try:
            return json.loads(body)
        except ValueError:
            pass
    return response_text(response, body)


def response_headers(response: httpx.Response) -> dict[str, str]:
    """Headers with lower-case names; repeated headers joined with `, `."""
    merged: dict[str, str] = {}
    for name, value in response.headers.multi_items():
        key = name.lower()
        merged[key] = f"{merged[key]}, {value}" if key in merged else value
    return merged


def status_error(
    *, method: str, url: str, response: httpx.Response, body: bytes, expected: str
) -> PieceError:
    """The `HttpStatusError` for a status outside `expect_status`.

    Retryable for 408, 429 and most 5xx; on 429 and 503 `Retry-After` becomes
    `retry_after_seconds`, which the engine honours within the node's retry policy.
    """
    status = response.status_code
    retry_after = (
        parse_retry_after(response.headers.get("retry-after"))
        if status in RETRY_AFTER_STATUSES
        else None
    )
    text = response_text(response, body)
    excerpt = text[:BODY_EXCERPT_CHARS] + ("..." if len(text) > BODY_EXCERPT_CHARS else "")
    hint = " (a redirect that was not followed)" if 300 <= status < 400 else ""
    return PieceError(
        f"http.request: {method} {url} answered {status} {response.reason_phrase}{hint}; "
        f"expected {expected} (set expect_status to accept other statuses)",
        error_type="HttpStatusError",
        retryable=is_retryable_status(status),
        retry_after_seconds=retry_after,
        details={
            "status": status,
            "reason": response.reason_phrase,
            "url": url,
            "body": excerpt,
            "retry_after_seconds": retry_after,
        },
    )
