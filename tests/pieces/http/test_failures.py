"""Transport failures name the request (method, host, port unless default, path) and the cause.

Each failure is real: closed ports, a port whose accept queue is full, raw servers that answer with
broken HTTP or a reset, the HTTPS test server, and names the resolver cannot resolve (the piece
resolves names itself, through its resolver: the system's or a scripted one). Every URL carries a
secret in its query string, which must never appear in a message.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

import pytest

from pieces.base import PieceError
from pieces.http import HttpRequestPiece, IPAddress
from pieces.testing import run_piece
from tests.pieces.http.certs import TlsPair
from tests.pieces.http.conftest import LOCAL, Call, FakeDns, context
from tests.pieces.http.local_server import LocalServer, hanging_port, serve_raw

QUERY = "?api_key=s3cret-in-query"
REFUSED_HINT = "(nothing listens on that port, or a firewall rejects connections)"
TIMEOUT_HINT = "(timeout_seconds covers resolving, connecting, redirects and reading the body)"


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def failure(
    input: dict[str, Any],
    *,
    resolver: Any = None,
    verify: Any = None,
    allow: Sequence[str] = LOCAL,
    **limits: Any,
) -> PieceError:
    piece = HttpRequestPiece.with_options(resolver=resolver, verify=verify)
    with pytest.raises(PieceError) as caught:
        await run_piece(piece, input, context=context(allow, **limits))
    return caught.value


def assert_names(error: PieceError, request: str) -> str:
    """`error` names `request` (`METHOD url-without-query`); returns the rest of the message."""
    prefix = f"http.request: {request} "
    assert error.message.startswith(prefix), error.message
    assert "s3cret" not in error.message
    assert "api_key" not in error.message
    method, url = request.split(" ", 1)
    assert (error.details["method"], error.details["url"]) == (method, url)
    return error.message[len(prefix) :]


# --- connecting ----------------------------------------------------------------------------------


async def test_refused_connection_names_the_request_and_the_address() -> None:
    port = closed_port()
    error = await failure({"url": f"http://127.0.0.1:{port}/orders{QUERY}"})
    rest = assert_names(error, f"GET http://127.0.0.1:{port}/orders")
    assert rest == f"could not connect to 127.0.0.1:{port}: connection refused {REFUSED_HINT}"
    assert (error.error_type, error.retryable) == ("ConnectionError", True)


async def test_every_address_tried_is_named(dns: FakeDns) -> None:
    port = closed_port()
    dns.table["multi.test"] = ["::1", "127.0.0.1"]
    error = await failure(
        {"method": "POST", "url": f"http://multi.test:{port}/orders{QUERY}", "json": {}},
        resolver=dns,
        allow=["127.0.0.1/32", "::1/128"],
    )
    rest = assert_names(error, f"POST http://multi.test:{port}/orders")
    assert rest.startswith(f"could not connect to any address of 'multi.test' ([::1]:{port}: ")
    assert f"; 127.0.0.1:{port}: connection refused) {REFUSED_HINT}" in rest
    assert error.error_type == "ConnectionError"


async def test_connect_time_out_says_it_was_connecting() -> None:
    with hanging_port() as port:
        error = await failure(
            {"url": f"http://127.0.0.1:{port}/orders{QUERY}", "timeout_seconds": 0.5}
        )
    rest = assert_names(error, f"GET http://127.0.0.1:{port}/orders")
    assert rest == f"timed out after 0.5 s while connecting to 127.0.0.1:{port} {TIMEOUT_HINT}"
    assert (error.error_type, error.retryable) == ("Timeout", True)
    assert error.details["timeout_seconds"] == 0.5


# --- name resolution -----------------------------------------------------------------------------


async def test_system_resolver_failure_names_the_request() -> None:
    """getaddrinfo itself: `.invalid` never resolves (RFC 6761). The default port is not shown."""
    error = await failure({"url": f"https://no-such-host.invalid/orders{QUERY}"})
    rest = assert_names(error, "GET https://no-such-host.invalid/orders")
    assert rest.startswith("could not resolve host 'no-such-host.invalid': ")
    assert error.error_type == "ConnectionError"
    assert error.details["host"] == "no-such-host.invalid"


async def test_a_name_that_does_not_exist_is_final() -> None:
    async def nxdomain(host: str, port: int) -> list[IPAddress]:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    error = await failure({"url": f"http://gone.test:8080/orders{QUERY}"}, resolver=nxdomain)
    rest = assert_names(error, "GET http://gone.test:8080/orders")
    assert (
        rest == "could not resolve host 'gone.test': no such host name (Name or service not known)"
    )
    assert error.retryable is False


async def test_a_dns_server_that_does_not_answer_is_retryable() -> None:
    async def no_answer(host: str, port: int) -> list[IPAddress]:
        raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")

    error = await failure({"url": f"http://flaky.test/orders{QUERY}"}, resolver=no_answer)
    rest = assert_names(error, "GET http://flaky.test/orders")
    assert rest.startswith("could not resolve host 'flaky.test': the DNS server did not answer")
    assert error.retryable is True


async def test_a_resolver_with_no_addresses(dns: FakeDns) -> None:
    dns.table["empty.test"] = []
    error = await failure({"url": f"http://empty.test/orders{QUERY}"}, resolver=dns)
    rest = assert_names(error, "GET http://empty.test/orders")
    assert rest == "could not resolve host 'empty.test': the resolver returned no addresses"


async def test_resolving_time_out_says_it_was_resolving() -> None:
    async def slow(host: str, port: int) -> list[IPAddress]:
        await asyncio.sleep(5)
        return []

    error = await failure(
        {"url": f"http://slow-dns.test/orders{QUERY}", "timeout_seconds": 0.2}, resolver=slow
    )
    rest = assert_names(error, "GET http://slow-dns.test/orders")
    assert rest == f"timed out after 0.2 s while resolving the host name {TIMEOUT_HINT}"


# --- TLS -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "trusted", "cause"),
    [
        ("impostor.test", True, "the server's certificate does not name this host (Hostname"),
        ("127.0.0.1", True, "the server's certificate does not name this host (IP address"),
        ("secure.test", False, "the server's certificate is not signed by a trusted authority"),
    ],
)
async def test_tls_failures_say_what_is_wrong_with_the_certificate(
    tls: TlsPair, tls_server: LocalServer, dns: FakeDns, host: str, trusted: bool, cause: str
) -> None:
    dns.table.update({"secure.test": ["127.0.0.1"], "impostor.test": ["127.0.0.1"]})
    url = tls_server.url(f"/orders{QUERY}", host=host)
    error = await failure({"url": url}, resolver=dns, verify=tls.client if trusted else None)
    rest = assert_names(error, f"GET https://{host}:{tls_server.port}/orders")
    assert rest.startswith(f"failed in the TLS handshake with 127.0.0.1:{tls_server.port}: {cause}")
    assert (error.error_type, error.retryable) == ("TlsError", False)
    assert tls_server.requests == []


async def test_https_to_a_plain_http_port(server: LocalServer) -> None:
    error = await failure({"url": f"https://127.0.0.1:{server.port}/orders{QUERY}"})
    rest = assert_names(error, f"GET https://127.0.0.1:{server.port}/orders")
    assert rest == (
        f"failed in the TLS handshake with 127.0.0.1:{server.port}: "
        "the server does not speak TLS on that port (plain http?)"
    )
    assert error.error_type == "TlsError"


# --- the HTTP exchange ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reply", "cause"),
    [
        (b"", "got no valid HTTP response (Server disconnected without sending a response.)"),
        (b"SSH-2.0-OpenSSH_9.6\r\n\r\n", "got no valid HTTP response (illegal status line: "),
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nabc",
            "got an incomplete or malformed response body (peer closed connection without "
            "sending complete message body (received 3 bytes, expected 100))",
        ),
    ],
)
async def test_protocol_errors_say_what_the_server_did(reply: bytes, cause: str) -> None:
    with serve_raw(reply) as port:
        error = await failure({"url": f"http://127.0.0.1:{port}/orders{QUERY}"})
    rest = assert_names(error, f"GET http://127.0.0.1:{port}/orders")
    assert rest.startswith(cause)
    assert (error.error_type, error.retryable) == ("ConnectionError", True)


@pytest.mark.parametrize(
    ("reply", "stage"),
    [
        (b"", "while waiting for the response"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nabc", "while reading the response body"),
    ],
)
async def test_a_reset_connection_says_when(reply: bytes, stage: str) -> None:
    with serve_raw(reply, reset=True) as port:
        error = await failure({"url": f"http://127.0.0.1:{port}/orders{QUERY}"})
    rest = assert_names(error, f"GET http://127.0.0.1:{port}/orders")
    assert rest == f"failed {stage}: the connection was reset by the other side"
    assert (error.error_type, error.retryable) == ("ConnectionError", True)


async def test_waiting_time_out_says_it_was_waiting(server: LocalServer) -> None:
    error = await failure({"url": server.url(f"/slow{QUERY}&seconds=3"), "timeout_seconds": 0.3})
    rest = assert_names(error, f"GET http://127.0.0.1:{server.port}/slow")
    assert rest == f"timed out after 0.3 s while waiting for the response {TIMEOUT_HINT}"


async def test_body_time_out_says_it_was_reading(server: LocalServer) -> None:
    url = server.url(f"/drip{QUERY}&chunks=20&interval=0.1")
    error = await failure({"url": url, "timeout_seconds": 0.5})
    rest = assert_names(error, f"GET http://127.0.0.1:{server.port}/drip")
    assert rest == f"timed out after 0.5 s while reading the response body {TIMEOUT_HINT}"


async def test_a_body_over_the_cap_names_the_request(server: LocalServer) -> None:
    error = await failure({"url": server.url(f"/bytes{QUERY}&n=2000")}, max_bytes=1000)
    rest = assert_names(error, f"GET http://127.0.0.1:{server.port}/bytes")
    assert rest.startswith("answered with a body larger than 1000 bytes (it announces 2000 bytes)")


# --- redirects -----------------------------------------------------------------------------------


def redirect(server: LocalServer, to: str) -> str:
    return server.url(f"/redirect?to={quote(to, safe='')}")


async def test_a_failing_hop_is_named_with_the_redirect_that_led_there(
    server: LocalServer,
) -> None:
    port = closed_port()
    error = await failure({"url": redirect(server, f"http://127.0.0.1:{port}/gone{QUERY}")})
    rest = assert_names(error, f"GET http://127.0.0.1:{port}/gone")
    assert rest == (
        f"could not connect to 127.0.0.1:{port}: connection refused {REFUSED_HINT} "
        f"(the 302 redirect of http://127.0.0.1:{server.port}/redirect led here)"
    )
    assert error.details["redirected_by"] == f"http://127.0.0.1:{server.port}/redirect"


async def test_too_many_redirects_names_the_request(server: LocalServer) -> None:
    url = server.url(f"/echo{QUERY}")
    for _ in range(3):
        url = redirect(server, url)
    error = await failure({"method": "POST", "url": url, "json": {}}, max_redirects=2)
    rest = assert_names(error, f"POST http://127.0.0.1:{server.port}/redirect")
    assert rest.startswith("led to more than 2 redirects; raise ALTLAS_HTTP_MAX_REDIRECTS")
    assert (error.error_type, error.retryable) == ("TooManyRedirects", False)


async def test_credentials_in_a_redirect_never_reach_a_message(
    call: Call, server: LocalServer
) -> None:
    """A `Location` with user:password@ is refused before connecting, the password not repeated."""
    with pytest.raises(PieceError) as caught:
        await call({"url": redirect(server, f"http://ada:pa55word@127.0.0.1:{server.port}/")})
    assert caught.value.error_type == "InvalidUrl"
    assert "pa55word" not in caught.value.message
    assert "ada" not in caught.value.message
