"""Fixtures for `http.request`: local servers, a scripted resolver, and contexts with settings.

The machine has no DNS and no internet: host names in tests resolve through `FakeDns`, and the
only reachable targets are the servers here on 127.0.0.1, allowed through the allow-list setting
the way an operator would allow them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from ipaddress import ip_address
from typing import Any

import pytest

from pieces.http import HttpRequestPiece, IPAddress
from pieces.settings import PieceSettings
from pieces.testing import StandaloneContext, run_piece
from tests.pieces.http.certs import TlsPair, make_tls_pair
from tests.pieces.http.local_server import LocalServer, serve

LOCAL = ["127.0.0.1/32"]


@dataclass
class FakeDns:
    """A resolver answering from a table; each answer is a list, or a list per successive call.

    `calls` records every `(host, port)` asked, to prove a name was resolved exactly once.
    """

    table: dict[str, list[str] | list[list[str]]] = field(default_factory=dict)
    calls: list[tuple[str, int]] = field(default_factory=list)

    async def __call__(self, host: str, port: int) -> list[IPAddress]:
        self.calls.append((host, port))
        answer = self.table.get(host)
        if answer is None:
            raise OSError(f"FakeDns has no entry for {host!r}")
        if answer and isinstance(answer[0], list):
            seen = sum(1 for h, _ in self.calls if h == host)
            answer = answer[min(seen, len(answer)) - 1]
        return [ip_address(str(a)) for a in answer]


def context(
    allow: Sequence[str] = (), *, max_bytes: int | None = None, max_redirects: int | None = None
) -> StandaloneContext:
    """A context whose settings allow `allow` (CIDRs, host names) and set the limits."""
    values: dict[str, Any] = {"http_allow_private": list(allow)}
    if max_bytes is not None:
        values["http_max_response_bytes"] = max_bytes
    if max_redirects is not None:
        values["http_max_redirects"] = max_redirects
    return StandaloneContext(settings=PieceSettings(**values))


Call = Callable[..., Any]


@pytest.fixture
def dns() -> FakeDns:
    return FakeDns()


@pytest.fixture
def call(dns: FakeDns) -> Call:
    """`await call(input, allow=[...], ...)`: run `http.request` with `dns` as its resolver."""
    piece = HttpRequestPiece.with_options(resolver=dns)

    async def run(input: dict[str, Any], allow: Sequence[str] = LOCAL, **limits: Any) -> Any:
        return await run_piece(piece, input, context=context(allow, **limits))

    return run


@pytest.fixture(scope="session")
def _http_server() -> Iterator[LocalServer]:
    with serve() as server:
        yield server


@pytest.fixture(scope="session")
def _other_server() -> Iterator[LocalServer]:
    with serve() as server:
        yield server


@pytest.fixture
def server(_http_server: LocalServer) -> LocalServer:
    """The main test server, its request log cleared."""
    _http_server.requests.clear()
    return _http_server


@pytest.fixture
def other_server(_other_server: LocalServer) -> LocalServer:
    """A second server: another port, hence another origin."""
    _other_server.requests.clear()
    return _other_server


@pytest.fixture(scope="session")
def tls() -> TlsPair:
    return make_tls_pair("secure.test")


@pytest.fixture(scope="session")
def _tls_server(tls: TlsPair) -> Iterator[LocalServer]:
    with serve(tls.server) as server:
        yield server


@pytest.fixture
def tls_server(_tls_server: LocalServer) -> LocalServer:
    """An HTTPS server whose certificate names only `secure.test` (trusted by `tls.client`)."""
    _tls_server.requests.clear()
    return _tls_server
