"""`expect_status`, status errors, retryability and `Retry-After`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import pytest
from pydantic import ValidationError

from pieces.base import PieceError
from pieces.http import HttpRequestPiece
from pieces.http.responses import describe_ranges, parse_retry_after, status_ranges
from tests.pieces.http.conftest import Call
from tests.pieces.http.local_server import LocalServer


async def fail(call: Call, input: dict[str, Any]) -> PieceError:
    with pytest.raises(PieceError) as caught:
        await call(input)
    return caught.value


async def test_unexpected_status_is_an_error_with_details(call: Call, server: LocalServer) -> None:
    error = await fail(call, {"url": server.url("/status/404?secret=x")})
    assert error.error_type == "HttpStatusError"
    assert error.retryable is False
    assert error.details["status"] == 404
    assert error.details["body"] == "status 404"
    assert "secret" not in error.message  # the query is not repeated
    assert f"GET http://127.0.0.1:{server.port}/status/404 answered 404 Not Found" in error.message
    assert "expected 2xx" in error.message


@pytest.mark.parametrize(
    ("status", "retryable"),
    [(400, False), (401, False), (403, False), (404, False), (422, False), (408, True),
     (429, True), (500, True), (502, True), (503, True), (504, True), (501, False)],
)  # fmt: skip
async def test_retryable_statuses(
    call: Call, server: LocalServer, status: int, retryable: bool
) -> None:
    error = await fail(call, {"url": server.url(f"/status/{status}")})
    assert error.retryable is retryable


@pytest.mark.parametrize(
    ("expect", "status"),
    [(404, 404), ([404], 404), ("4xx", 418), (["2xx", "404"], 404), ("200-206", 206),
     ([201, "5xx"], 503), ("2xx", 299)],
)  # fmt: skip
async def test_expected_statuses_succeed(
    call: Call, server: LocalServer, expect: Any, status: int
) -> None:
    output = await call({"url": server.url(f"/status/{status}?json=1"), "expect_status": expect})
    assert output["status"] == status
    assert output["body"] == {"code": status}


async def test_expect_status_narrows_success(call: Call, server: LocalServer) -> None:
    error = await fail(call, {"url": server.url("/status/200"), "expect_status": 201})
    assert "expected 201" in error.message


@pytest.mark.parametrize("bad", ["2XX", "6xx", "99", "300-200", "abc", [], 600, 99, "200-600"])
def test_invalid_expect_status_is_a_validation_error(bad: Any) -> None:
    with pytest.raises(ValidationError):
        HttpRequestPiece.Input.model_validate({"url": "http://x.test/", "expect_status": bad})


def test_status_ranges() -> None:
    assert status_ranges(["2xx", 404, "500-503"]) == ((200, 299), (404, 404), (500, 503))
    assert describe_ranges(status_ranges(["2xx", 404, "500-503"])) == "2xx, 404, 500-503"


@pytest.mark.parametrize("status", [429, 503])
async def test_retry_after_seconds(call: Call, server: LocalServer, status: int) -> None:
    error = await fail(call, {"url": server.url(f"/status/{status}?retry_after=7")})
    assert error.retryable is True
    assert error.retry_after_seconds == 7.0
    assert error.details["retry_after_seconds"] == 7.0


async def test_retry_after_http_date(call: Call, server: LocalServer) -> None:
    when = format_datetime(datetime.now(UTC) + timedelta(seconds=120), usegmt=True)
    error = await fail(call, {"url": server.url("/status/429"), "query": {"retry_after": when}})
    assert error.retry_after_seconds is not None
    assert 110 <= error.retry_after_seconds <= 120


async def test_retry_after_ignored_on_other_statuses(call: Call, server: LocalServer) -> None:
    error = await fail(call, {"url": server.url("/status/500?retry_after=7")})
    assert error.retry_after_seconds is None


NOW = datetime(2015, 10, 21, 7, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("120", 120.0),
        ("0", 0.0),
        (" 5 ", 5.0),
        ("Wed, 21 Oct 2015 07:28:00 GMT", 1680.0),
        ("Wednesday, 21-Oct-15 07:28:00 GMT", 1680.0),  # RFC 850
        ("Wed Oct 21 07:28:00 2015", 1680.0),  # asctime
        ("Wed, 21 Oct 2015 06:00:00 GMT", 0.0),  # in the past
        ("-5", None),
        ("1.5", None),
        ("soon", None),
        ("", None),
        (None, None),
    ],
)
def test_parse_retry_after(value: str | None, seconds: float | None) -> None:
    assert parse_retry_after(value, now=NOW) == seconds
