"""HTTPS through a pinned address: the certificate is still checked against the host name."""

from __future__ import annotations

import pytest

from pieces.base import PieceError
from pieces.http import HttpRequestPiece
from pieces.testing import run_piece
from tests.pieces.http.certs import TlsPair
from tests.pieces.http.conftest import LOCAL, FakeDns, context
from tests.pieces.http.local_server import LocalServer


@pytest.fixture
def tls_dns(dns: FakeDns) -> FakeDns:
    dns.table.update({"secure.test": ["127.0.0.1"], "impostor.test": ["127.0.0.1"]})
    return dns


async def test_https_to_a_pinned_address_verifies_the_name(
    tls: TlsPair, tls_server: LocalServer, tls_dns: FakeDns
) -> None:
    server_names: list[str | None] = []
    tls.server.sni_callback = lambda _sock, name, _ctx: server_names.append(name)
    piece = HttpRequestPiece.with_options(resolver=tls_dns, verify=tls.client)
    try:
        output = await run_piece(
            piece, {"url": tls_server.url("/echo", host="secure.test")}, context=context(LOCAL)
        )
    finally:
        tls.server.sni_callback = None
    assert output["status"] == 200
    assert server_names == ["secure.test"]  # SNI carries the name, not the pinned address
    assert output["body"]["headers"]["host"] == f"secure.test:{tls_server.port}"
    assert tls_dns.calls == [("secure.test", tls_server.port)]


async def test_certificate_for_another_name_is_refused(
    tls: TlsPair, tls_server: LocalServer, tls_dns: FakeDns
) -> None:
    """Same address, but the URL names a host the certificate does not cover."""
    piece = HttpRequestPiece.with_options(resolver=tls_dns, verify=tls.client)
    with pytest.raises(PieceError) as caught:
        await run_piece(
            piece, {"url": tls_server.url("/echo", host="impostor.test")}, context=context(LOCAL)
        )
    assert caught.value.error_type == "TlsError"
    assert caught.value.retryable is False
    assert tls_server.requests == []


async def test_ip_literal_is_checked_against_the_certificate(
    tls: TlsPair, tls_server: LocalServer
) -> None:
    """The certificate names no IP address, so https://127.0.0.1 does not verify."""
    piece = HttpRequestPiece.with_options(verify=tls.client)
    with pytest.raises(PieceError) as caught:
        await run_piece(piece, {"url": tls_server.url("/echo")}, context=context(LOCAL))
    assert caught.value.error_type == "TlsError"


async def test_unknown_authority_is_refused(tls_server: LocalServer, tls_dns: FakeDns) -> None:
    """Without the test CA (the default trust store), the server's certificate is not trusted."""
    piece = HttpRequestPiece.with_options(resolver=tls_dns)
    with pytest.raises(PieceError) as caught:
        await run_piece(
            piece, {"url": tls_server.url("/echo", host="secure.test")}, context=context(LOCAL)
        )
    assert caught.value.error_type == "TlsError"
