"""One HTTP exchange pinned to an address that was checked. Main entry: `open_pinned`.

The request URL is rewritten to the checked IP address, so httpx never resolves the name again
(no DNS rebinding between the check and the connection), while the `Host` header carries the
original host and, for https, the TLS server name (SNI) and certificate check use the original
host name (httpcore's `sni_hostname` request extension). Each exchange gets its own client: a
pooled connection verified for one host name is never reused for another name on the same IP.
It is a bare transport, not a client: no cookie jar carries cookies between hops, `Location` is
left to `pieces.http.exchange`, and proxies from the environment are ignored (`trust_env=False`),
since a proxy would resolve and connect to the name on our behalf.

Failures are left for `pieces.http.failures` to put into words: `open_pinned` reports each
`Stage` as it starts (through httpcore's `trace` extension) and raises `ConnectFailedError` with
every address's error when none accepted a connection; `read_capped` raises `BodyTooLargeError`.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from enum import StrEnum
from functools import cache
from ipaddress import IPv6Address
from typing import Any

import httpx

from pieces.http.addresses import IPAddress
from pieces.http.urls import Target

USER_AGENT = "altlas-workflow-engine http.request"
DEFAULT_HEADERS = {"User-Agent": USER_AGENT, "Accept": "*/*", "Accept-Encoding": "gzip, deflate"}


class Stage(StrEnum):
    """What an exchange is doing; the value completes a message ("timed out while ...")."""

    RESOLVING = "while resolving the host name"
    CONNECTING = "while connecting"
    TLS = "in the TLS handshake"
    SENDING = "while sending the request"
    WAITING = "while waiting for the response"
    READING = "while reading the response body"


StageListener = Callable[[Stage, IPAddress], None]
"""`listener(stage, address)`: called as each stage starts on a connection to `address`."""

# httpcore's `trace` events (https://www.encode.io/httpcore/extensions/#trace) that start a stage.
_TRACED_STAGES = {
    "connection.connect_tcp.started": Stage.CONNECTING,
    "connection.start_tls.started": Stage.TLS,
    "http11.send_request_headers.started": Stage.SENDING,
    "http11.receive_response_headers.started": Stage.WAITING,
    "http11.receive_response_body.started": Stage.READING,
}


class ConnectFailedError(httpx.ConnectError):
    """No checked address accepted a connection; `attempts` holds each address and its error."""

    def __init__(self, attempts: Sequence[tuple[IPAddress, httpx.ConnectError]]) -> None:
        super().__init__(f"no address accepted a connection ({len(attempts)} tried)")
        self.attempts = tuple(attempts)


class BodyTooLargeError(Exception):
    """The response body is larger than the cap (`why`: announced so, or seen while reading)."""

    def __init__(self, limit: int, why: str, status: int) -> None:
        super().__init__(f"the response body is larger than {limit} bytes ({why})")
        self.limit = limit
        self.why = why
        self.status = status


def endpoint(address: IPAddress, port: int) -> str:
    """An address and port as in messages: `127.0.0.1:8080`, `[::1]:8080`."""
    if isinstance(address, IPv6Address):
        return f"[{IPv6Address(int(address)).compressed}]:{port}"
    return f"{address}:{port}"


@dataclass(frozen=True)
class Outgoing:
    """What to send on one hop: method, headers (without `Host`), and the body bytes if any."""

    method: str
    headers: httpx.Headers
    content: bytes | None = None


@cache
def default_ssl_context() -> ssl.SSLContext:
    """The certificate store used when none is given (certifi's, as httpx uses), built once."""
    return httpx.create_ssl_context(trust_env=False)


def pinned_request_url(target: Target, address: IPAddress) -> httpx.URL:
    """The target's URL with its host replaced by `address` (bracketed for IPv6)."""
    host = (
        IPv6Address(int(address)).compressed if isinstance(address, IPv6Address) else str(address)
    )
    return target.url.copy_with(host=host)


@asynccontextmanager
async def open_pinned(
    target: Target,
    addresses: Sequence[IPAddress],
    outgoing: Outgoing,
    *,
    verify: ssl.SSLContext | None = None,
    io_timeout: float,
    on_stage: StageListener | None = None,
) -> AsyncIterator[httpx.Response]:
    """Send `outgoing` to the first of `addresses` that accepts a connection; yield the response.

    Args:
        target: the parsed URL (its host goes into `Host` and the TLS server name).
        addresses: checked addresses of `target.host`, tried in order while connecting fails.
        outgoing: method, headers and body.
        verify: the TLS trust store; `None` uses `default_ssl_context()`.
        io_timeout: httpx's per-operation time-out (connect, each read, each write).
        on_stage: told as connecting, the TLS handshake, sending, waiting and reading start.

    Yields:
        The response with its body not yet read; it is closed when the block exits.

    Raises:
        ConnectFailedError: no address accepted a connection (each one's error inside).
        httpx.HTTPError: a TLS failure (at once: another address would not make the certificate
            valid), a time-out, or a protocol error.
    """
    headers = httpx.Headers(DEFAULT_HEADERS)
    headers.update(outgoing.headers)
    headers["Host"] = target.host_header
    if not addresses:
        raise ValueError(f"no address to connect to for {target.host!r}")
    failures: list[tuple[IPAddress, httpx.ConnectError]] = []
    for address in addresses:
        extensions = _extensions(target, address, io_timeout, on_stage)
        # A transport, not a client: no cookie jar, no redirect handling, no environment proxies.
        transport = httpx.AsyncHTTPTransport(
            verify=verify or default_ssl_context(), trust_env=False
        )
        request = httpx.Request(
            outgoing.method,
            pinned_request_url(target, address),
            headers=headers,
            content=outgoing.content,
            extensions=extensions,
        )
        try:
            response = await transport.handle_async_request(request)
        except httpx.ConnectError as exc:
            await transport.aclose()
            if ssl_cause(exc) is not None:
                raise
            failures.append((address, exc))
            continue
        except BaseException:
            await transport.aclose()
            raise
        response.request = request
        try:
            yield response
        finally:
            await response.aclose()
            await transport.aclose()
        return
    raise ConnectFailedError(failures) from failures[-1][1]


def _extensions(
    target: Target, address: IPAddress, io_timeout: float, on_stage: StageListener | None
) -> dict[str, Any]:
    """httpcore request extensions: time-outs, the TLS server name, stage tracing."""
    extensions: dict[str, Any] = {"timeout": httpx.Timeout(io_timeout).as_dict()}
    if target.address is None:
        extensions["sni_hostname"] = target.host.rstrip(".")
    if on_stage is not None:
        listener = on_stage

        async def trace(event: str, info: dict[str, Any]) -> None:
            stage = _TRACED_STAGES.get(event)
            if stage is not None:
                listener(stage, address)

        extensions["trace"] = trace
        listener(Stage.CONNECTING, address)
    return extensions


def ssl_cause(exc: BaseException) -> ssl.SSLError | None:
    """The `ssl.SSLError` behind an httpx error (httpx -> httpcore -> ssl), if any."""
    seen: BaseException | None = exc
    for _ in range(10):  # a short chain
        if seen is None or isinstance(seen, ssl.SSLError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


async def read_capped(response: httpx.Response, limit: int) -> bytes:
    """Read the (decoded) body, refusing to hold more than `limit` bytes.

    Raises:
        BodyTooLargeError: as soon as the body passes the limit, or at once when
            `Content-Length` already announces more.
    """
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise BodyTooLargeError(limit, f"it announces {declared} bytes", response.status_code)
    chunks: list[bytes] = []
    total = 0
    async for chunk in response.aiter_bytes():
        total += len(chunk)
        if total > limit:
            raise BodyTooLargeError(limit, "reading stopped there", response.status_code)
        chunks.append(chunk)
    return b"".join(chunks)
