"""A whole `http.request` exchange, every redirect hop checked again. Main entry: `fetch`.

httpx's own redirect following is off: each `Location` is parsed, resolved once and checked like
the first URL before anything connects to it. Method changes follow RFC 9110 as browsers apply it
(303 turns anything but HEAD into GET; 301 and 302 turn POST into GET; 307 and 308 keep method and
body), and `Authorization`, `Cookie` and `Proxy-Authorization` are dropped for good once a hop
leaves the original origin (scheme, host and port).

`fetch` keeps the request's deadline and follows its progress (hop, stage, address), so that
every failure is reported by `pieces.http.failures` naming the request and the cause.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

import httpx

from pieces.base import PieceError
from pieces.http.failures import Progress, hop_failure, reached_by_redirect, too_many_redirects
from pieces.http.policy import (
    AddressPolicy,
    InvalidUrlError,
    Resolver,
    UnresolvableHostError,
    resolve_checked,
    system_resolver,
)
from pieces.http.transport import (
    BodyTooLargeError,
    Outgoing,
    Stage,
    open_pinned,
    read_capped,
)
from pieces.http.urls import Target, UrlError, is_absolute, parse_target, safe_display

REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
CREDENTIAL_HEADERS = ("authorization", "cookie", "proxy-authorization")
BODY_HEADERS = ("content-type", "content-length", "content-encoding", "transfer-encoding")

QueryValue = str | int | float | bool
Logger = logging.Logger | logging.LoggerAdapter[logging.Logger]


@dataclass(frozen=True)
class FetchOptions:
    """The limits and plumbing of an exchange, set by the operator rather than the workflow.

    Attributes:
        policy: which non-public addresses are allowed.
        resolver: host name to addresses (default: the system resolver).
        verify: TLS trust store (`None`: certifi's).
        max_redirects: most redirects followed before failing.
        max_response_bytes: largest decoded body read.
    """

    policy: AddressPolicy = field(default_factory=AddressPolicy)
    resolver: Resolver = system_resolver
    verify: ssl.SSLContext | None = None
    max_redirects: int = 5
    max_response_bytes: int = 10 * 1024 * 1024


@dataclass(frozen=True)
class RequestSpec:
    """What the workflow asked for.

    Attributes:
        method: HTTP method, upper case.
        url: absolute http(s) URL.
        headers: request headers.
        query: parameters added to the URL's own query (a list value repeats the key).
        content: body bytes, or `None`.
        follow_redirects: follow 301/302/303/307/308 (each hop checked) or return them.
        timeout: deadline of the whole exchange in seconds (resolving, connecting, every
            redirect, reading the body).
    """

    method: str
    url: str
    headers: httpx.Headers = field(default_factory=httpx.Headers)
    query: Mapping[str, QueryValue | Sequence[QueryValue]] = field(default_factory=dict)
    content: bytes | None = None
    follow_redirects: bool = True
    timeout: float = 30.0


@dataclass(frozen=True)
class Fetched:
    """The final response: the hop it came from, its status line and headers, the body bytes."""

    target: Target
    method: str
    response: httpx.Response
    body: bytes


def parse_or_refuse(url: str) -> Target:
    """`parse_target`, with a refusal as `InvalidUrlError` (a non-retryable `PieceError`)."""
    try:
        return parse_target(url)
    except UrlError as exc:
        raise InvalidUrlError(safe_display(url), str(exc)) from None


def redirected(spec: RequestSpec, status: int) -> RequestSpec:
    """The request for the next hop after a redirect with `status` (method and body rules)."""
    to_get = (status == 303 and spec.method != "HEAD") or (
        status in (301, 302) and spec.method == "POST"
    )
    if not to_get:
        return spec
    headers = httpx.Headers(spec.headers)
    for name in BODY_HEADERS:
        headers.pop(name, None)
    return replace(spec, method="GET", content=None, headers=headers)


def without_credentials(spec: RequestSpec) -> RequestSpec:
    """The request with `Authorization`, `Cookie` and `Proxy-Authorization` removed."""
    headers = httpx.Headers(spec.headers)
    for name in CREDENTIAL_HEADERS:
        headers.pop(name, None)
    return replace(spec, headers=headers)


async def fetch(spec: RequestSpec, options: FetchOptions, *, logger: Logger) -> Fetched:
    """Send the request, following redirects, checking every hop's addresses before connecting.

    Args:
        spec: the request.
        options: policy, resolver, TLS trust and limits.
        logger: where each hop is logged (method, URL without query, status).

    Returns:
        The final response with its body read (up to `options.max_response_bytes`).

    Raises:
        PieceError: refusals (`InvalidUrl`, `ForbiddenAddress`), `TooManyRedirects`, and every
            transport failure (`ConnectionError`, `TlsError`, `Timeout`, `ResponseTooLarge`,
            `InvalidRequest`, `InvalidResponse`), each naming the method and the URL of the hop
            that failed, without its query.
    """
    first = parse_or_refuse(spec.url)
    target = parse_or_refuse(str(first.url.copy_merge_params(dict(spec.query))))
    progress = Progress(spec.method, target)
    deadline = asyncio.timeout(spec.timeout)
    try:
        async with deadline:
            return await _follow(spec, target, options, progress, logger)
    except TimeoutError as exc:
        if not deadline.expired():
            raise
        raise hop_failure(exc, progress, timeout=spec.timeout) from None


async def _follow(
    spec: RequestSpec, target: Target, options: FetchOptions, progress: Progress, logger: Logger
) -> Fetched:
    """The hops of `fetch`, `progress` kept up to date; failures become `PieceError`s here."""
    origin = target.origin
    start = (spec.method, target)
    came_from: tuple[Target, int] | None = None  # the hop that redirected here, and its status
    for hop in range(options.max_redirects + 1):
        if target.origin != origin:
            spec = without_credentials(spec)
        progress.next_hop(spec.method, target, came_from)
        try:
            answer = await _exchange(spec, target, options, progress, logger)
        except (httpx.HTTPError, UnresolvableHostError, BodyTooLargeError) as exc:
            raise hop_failure(exc, progress, timeout=spec.timeout) from exc
        except PieceError as exc:  # a refusal of this hop's target
            raise exc if came_from is None else reached_by_redirect(exc, *came_from) from None
        if isinstance(answer, Fetched):
            return answer
        status, location = answer
        if hop == options.max_redirects:
            break
        try:
            next_hop = next_target(target, location)
        except PieceError as exc:
            raise reached_by_redirect(exc, target, status) from None
        came_from, target = (target, status), next_hop
        spec = redirected(spec, status)
    raise too_many_redirects(*start, options.max_redirects)


async def _exchange(
    spec: RequestSpec, target: Target, options: FetchOptions, progress: Progress, logger: Logger
) -> Fetched | tuple[int, str]:
    """One hop: the final response with its body, or a redirect to follow (status, Location)."""
    addresses = await resolve_checked(target, options.policy, options.resolver)
    outgoing = Outgoing(spec.method, spec.headers, spec.content)
    async with open_pinned(
        target,
        addresses,
        outgoing,
        verify=options.verify,
        io_timeout=spec.timeout,
        on_stage=progress.enter,
    ) as response:
        status = response.status_code
        logger.info("http.request %s %s -> %d", spec.method, target.display(), status)
        location = response.headers.get("location", "")
        if spec.follow_redirects and status in REDIRECT_STATUSES and location:
            return status, location
        progress.enter(Stage.READING)
        # A HEAD response announces the size of a body it does not carry.
        limit = options.max_response_bytes
        body = b"" if spec.method == "HEAD" else await read_capped(response, limit)
        return Fetched(target, spec.method, response, body)


def next_target(current: Target, location: str) -> Target:
    """The target a `Location` header points to, resolved against the current URL.

    Absolute and scheme-relative locations are read by `parse_target` itself (so that a spelling
    such as `http://0177.0.0.1/` is judged as the address it denotes); relative ones are joined.
    """
    location = location.strip()
    if location.startswith("//"):
        location = f"{current.scheme}:{location}"
    if is_absolute(location):
        return parse_or_refuse(location)
    try:
        joined = current.url.join(location)
    except httpx.InvalidURL as exc:
        raise InvalidUrlError(
            safe_display(location), f"redirect target is invalid: {exc}"
        ) from None
    return parse_or_refuse(str(joined))
