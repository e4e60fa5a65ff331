"""The built-in `http.request` piece, SSRF protection on by default. Main entry: `HttpRequestPiece`.

Modules, each owning one concern:

- `addresses`: which IP addresses are public (`non_public_reason`, `is_public`).
- `urls`: reading a URL as browsers do, every IPv4 spelling included (`parse_target`).
- `policy`: the allow-list setting, name resolution and the check (`resolve_checked`).
- `transport`: one exchange pinned to a checked address, body read under a cap (`open_pinned`).
- `failures`: what went wrong on a hop, as a `PieceError` naming the request (`hop_failure`).
- `exchange`: the whole request under one deadline, redirects re-checked hop by hop (`fetch`).
- `responses`: `expect_status`, `Retry-After`, output body and status errors.
- `piece`: the piece, its input and output models.
"""

from pieces.http.addresses import IPAddress, NonPublic, is_public, non_public_reason
from pieces.http.exchange import FetchOptions, RequestSpec, fetch
from pieces.http.piece import HttpRequestInput, HttpRequestOutput, HttpRequestPiece
from pieces.http.policy import (
    AddressPolicy,
    ForbiddenAddressError,
    InvalidUrlError,
    Resolver,
    UnresolvableHostError,
    resolve_checked,
    system_resolver,
)
from pieces.http.urls import Target, UrlError, parse_target

__all__ = [
    "AddressPolicy",
    "FetchOptions",
    "ForbiddenAddressError",
    "HttpRequestInput",
    "HttpRequestOutput",
    "HttpRequestPiece",
    "IPAddress",
    "InvalidUrlError",
    "NonPublic",
    "RequestSpec",
    "Resolver",
    "Target",
    "UnresolvableHostError",
    "UrlError",
    "fetch",
    "is_public",
    "non_public_reason",
    "parse_target",
    "resolve_checked",
    "system_resolver",
]
