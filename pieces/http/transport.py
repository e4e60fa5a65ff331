"""One HTTP exchange pinned to an address that was checked. Main entry: `open_pinned`.

The request URL is rewritten to the checked IP address, so httpx never resolves the name again
(no DNS rebinding between the check and the connection), while the `Host` header carries the
original host and, for https, the TLS server name (SNI) and certificate check use the original
host name (httpcore's `sni_hostname` request extension). Each exchange gets its own client: a
pooled connection verified for one host name is never reused for another name on the same IP.
It is a bare transport, not a client: no cookie jar carries cookies between hops, `Location` is
left to `pieces.http.exchange`, and proxies from the environment are ignored (`trust_env=False`),
since a proxy would resolve and connect to the name on our behalf.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import cache
from ipaddress import IPv6Address
from typing import Any

import httpx

from pieces.base import PieceError
from pieces.http.addresses import IPAddress
from pieces.http.urls import Target

USER_AGENT = "altlas-workflow-engine http.request"
DEFAULT_HEADERS = {"User-Agent": USER_AGENT, "Accept": "*/*", "Accept-Encoding": "gzip, deflate"}


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
) -> AsyncIterator[httpx.Response]:
    """Send `outgoing` to the first of `addresses` that accepts a connection; yield the response.

    Args:
        target: the parsed URL (its host goes into `Host` and the TLS server name).
        addresses: checked addresses of `target.host`, tried in order while connecting fails.
        outgoing: method, headers and body.
        verify: the TLS trust store; `None` uses `default_ssl_context()`.
        io_timeout: httpx's per-operation time-out (connect, each read, each write).

    Yields:
        The response with its body not yet read; it is closed when the block exits.

    Raises:
        httpx.HTTPError: the last connection error when no address accepted, or a protocol error.
    """
    headers = httpx.Headers(DEFAULT_HEADERS)
    headers.update(outgoing.headers)
    headers["Host"] = target.host_header
    extensions: dict[str, Any] = {"timeout": httpx.Timeout(io_timeout).as_dict()}
    if target.address is None:
        extensions["sni_hostname"] = target.host.rstrip(".")
    last_error: httpx.ConnectError | None = None
    for address in addresses:
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
            last_error = exc
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
    if last_error is None:
        raise ValueError(f"no address to connect to for {target.host!r}")
    raise last_error


async def read_capped(response: httpx.Response, limit: int) -> bytes:
    """Read the (decoded) body, refusing to hold more than `limit` bytes.

    Raises:
        PieceError: (`ResponseTooLarge`, not retryable) as soon as the body passes the limit, or
            at once when `Content-Length` already announces more.
    """
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise _too_large(response, limit, f"it announces {declared} bytes")
    chunks: list[bytes] = []
    total = 0
    async for chunk in response.aiter_bytes():
        total += len(chunk)
        if total > limit:
            raise _too_large(response, limit, "reading stopped there")
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large(response: httpx.Response, limit: int, why: str) -> PieceError:
    return PieceError(
        f"http.request: the response body is larger than {limit} bytes ({why}); raise "
        "ALTLAS_HTTP_MAX_RESPONSE_BYTES to accept larger responses",
        error_type="ResponseTooLarge",
        retryable=False,
        details={"status": response.status_code, "limit_bytes": limit},
    )
