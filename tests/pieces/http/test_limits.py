"""Time-outs, the response size cap, and network failures."""

from __future__ import annotations

import socket
import time
from typing import Any

import pytest

from pieces.base import PieceError
from pieces.http import HttpRequestPiece
from pieces.testing import run_piece
from tests.pieces.http.conftest import Call, FakeDns, context
from tests.pieces.http.local_server import LocalServer


async def fail(call: Call, input: dict[str, Any], **limits: Any) -> PieceError:
    with pytest.raises(PieceError) as caught:
        await call(input, **limits)
    return caught.value


async def test_slow_answer_times_out(call: Call, server: LocalServer) -> None:
    started = time.monotonic()
    error = await fail(call, {"url": server.url("/slow?seconds=3"), "timeout_seconds": 0.3})
    assert time.monotonic() - started < 1.5
    assert error.error_type == "Timeout"
    assert error.retryable is True
    assert "0.3 s" in error.message


async def test_timeout_covers_the_whole_body(call: Call, server: LocalServer) -> None:
    """Each byte arrives well within the time-out; the whole body does not."""
    started = time.monotonic()
    error = await fail(
        call, {"url": server.url("/drip?chunks=20&interval=0.1"), "timeout_seconds": 0.5}
    )
    assert time.monotonic() - started < 1.5
    assert error.error_type == "Timeout"


async def test_within_the_time_out(call: Call, server: LocalServer) -> None:
    output = await call({"url": server.url("/drip?chunks=3&interval=0.05"), "timeout_seconds": 5})
    assert output["body"] == "xxx"


async def test_announced_size_over_the_cap(call: Call, server: LocalServer) -> None:
    error = await fail(call, {"url": server.url("/bytes?n=2000")}, max_bytes=1000)
    assert error.error_type == "ResponseTooLarge"
    assert error.retryable is False
    assert "ALTLAS_HTTP_MAX_RESPONSE_BYTES" in error.message
    assert error.details["status"] == 200
    assert error.details["limit_bytes"] == 1000


async def test_unannounced_size_stops_reading_at_the_cap(call: Call, server: LocalServer) -> None:
    error = await fail(call, {"url": server.url("/bytes?n=5000000&unsized=1")}, max_bytes=100_000)
    assert error.error_type == "ResponseTooLarge"
    assert "reading stopped" in error.message


async def test_decompressed_size_counts(call: Call, server: LocalServer) -> None:
    """A small gzip body that inflates past the cap is refused (no decompression bomb)."""
    error = await fail(call, {"url": server.url("/gzip?n=5000000")}, max_bytes=1_000_000)
    assert error.error_type == "ResponseTooLarge"


async def test_exactly_the_cap_is_fine(call: Call, server: LocalServer) -> None:
    output = await call({"url": server.url("/bytes?n=1000")}, max_bytes=1000)
    assert len(output["body"]) == 1000


async def test_head_is_not_held_to_the_announced_size(call: Call, server: LocalServer) -> None:
    output = await call({"method": "HEAD", "url": server.url("/bytes?n=5000")}, max_bytes=1000)
    assert output["headers"]["content-length"] == "5000"
    assert output["body"] == ""


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_refused_connection_is_retryable(call: Call) -> None:
    error = await fail(call, {"url": f"http://127.0.0.1:{_closed_port()}/"})
    assert error.error_type == "ConnectionError"
    assert error.retryable is True


async def test_unresolvable_name(call: Call, dns: FakeDns) -> None:
    error = await fail(call, {"url": "http://nowhere.test/"})
    assert error.error_type == "ConnectionError"
    assert "nowhere.test" in error.message


async def test_system_resolver_failure_is_a_connection_error() -> None:
    """The default resolver (getaddrinfo): `.invalid` never resolves (RFC 6761)."""
    with pytest.raises(PieceError) as caught:
        await run_piece(
            HttpRequestPiece, {"url": "http://no-such-host.invalid/"}, context=context()
        )
    assert caught.value.error_type == "ConnectionError"


async def test_system_resolver_localhost_refused() -> None:
    with pytest.raises(PieceError) as caught:
        await run_piece(HttpRequestPiece, {"url": "http://localhost:9/"}, context=context())
    assert caught.value.error_type == "ForbiddenAddress"
