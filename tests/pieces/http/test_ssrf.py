"""SSRF protection of `http.request`, end to end: refusals happen before anything connects.

Every refused target points at the live test server's port, so a refusal that let a request
through would show up in `server.requests`.
"""

from __future__ import annotations

import pytest

from pieces.base import PieceError
from pieces.http import HttpRequestPiece
from pieces.settings import get_piece_settings
from pieces.testing import StandaloneContext, run_piece
from tests.pieces.http.conftest import Call, FakeDns
from tests.pieces.http.local_server import LocalServer

REFUSED_HOSTS = [
    "127.0.0.1",
    "127.0.0.2",
    "2130706433",
    "0x7f000001",
    "017700000001",
    "0177.0.0.1",
    "0x7f.0.0.1",
    "0x7f.1",
    "127.1",
    "127.0.1",
    "127.0.0.1.",
    "127.000.000.001",
    "0x7F.0X0.0.01",
    "0",
    "0.0.0.0",
    "%31%32%37.0.0.1",
    "\uff11\uff12\uff17.\uff10.\uff10.\uff11",
    "127\u30020\u30020\u30021",
    "[::]",
    "[::1]",
    "[0:0:0:0:0:0:0:1]",
    "[::ffff:127.0.0.1]",
    "[::ffff:7f00:1]",
    "[0:0:0:0:0:ffff:127.0.0.1]",
    "[::127.0.0.1]",
    "[::ffff:0:127.0.0.1]",
    "[64:ff9b::127.0.0.1]",
    "[64:ff9b::a9fe:a9fe]",
    "[64:ff9b:1::a00:1]",
    "[2002:7f00:1::]",
    "[2002:a9fe:a9fe::]",
    "[2001:0:4136:e378:8000:63bf:80ff:fffe]",
    "169.254.169.254",
    "2852039166",
    "0xa9fea9fe",
    "0251.0376.0251.0376",
    "169.254.43518",
    "[::ffff:169.254.169.254]",
    "[fd00:ec2::254]",
    "100.100.100.200",
    "192.0.0.192",
    "100.64.0.1",
    "[::ffff:100.64.0.1]",
    "10.0.0.1",
    "012.0.0.1",
    "172.16.0.1",
    "192.168.0.1",
    "3232235521",
    "0xc0.0xa8.0.1",
    "169.254.1.1",
    "224.0.0.1",
    "255.255.255.255",
    "240.0.0.1",
    "198.18.0.1",
    "192.0.2.1",
    "[fe80::1]",
    "[fc00::1]",
    "[ff02::1]",
    "[2001:db8::1]",
    # host names, resolved by the scripted DNS in `refusing_dns`
    "localhost",
    "LOCALHOST.",
    "internal.test",
    "metadata.test",
    "cgnat.test",
    "mixed.test",
    "mixed6.test",
    "mapped.test",
]


@pytest.fixture
def refusing_dns(dns: FakeDns) -> FakeDns:
    dns.table.update(
        {
            "localhost": ["127.0.0.1", "::1"],
            "localhost.": ["127.0.0.1", "::1"],
            "internal.test": ["10.1.2.3"],
            "metadata.test": ["169.254.169.254"],
            "cgnat.test": ["100.64.0.1"],
            "mixed.test": ["93.184.215.14", "10.0.0.1"],  # one private address is enough
            "mixed6.test": ["2606:4700::1111", "::1"],
            "mapped.test": ["::ffff:127.0.0.1"],
        }
    )
    return dns


@pytest.mark.parametrize("host", REFUSED_HOSTS)
@pytest.mark.parametrize("scheme", ["http", "https"])
async def test_refused_before_connecting(
    call: Call, server: LocalServer, refusing_dns: FakeDns, host: str, scheme: str
) -> None:
    with pytest.raises(PieceError) as caught:
        await call({"url": f"{scheme}://{host}:{server.port}/echo"}, allow=[])
    error = caught.value
    assert error.error_type == "ForbiddenAddress"
    assert error.retryable is False
    assert "ALTLAS_HTTP_ALLOW_PRIVATE" in error.message
    assert repr(error.details["host"]) in error.message  # names the (canonical) host
    assert server.requests == []


INVALID_URLS = [
    "ftp://example.com/",
    "file:///etc/passwd",
    "gopher://127.0.0.1:70/_x",
    "dict://127.0.0.1:11211/",
    "http://user:hunter2@example.com/",
    "http://user@127.0.0.1/",
    "http://example.com\\@127.0.0.1/",
    "http://1.2.3.4.5/",
    "http://256.1.1.1/",
    "http://[::1%25lo]/",
    "example.com",
    "http:///x",
]


@pytest.mark.parametrize("url", INVALID_URLS)
async def test_invalid_urls_refused(call: Call, url: str) -> None:
    with pytest.raises(PieceError) as caught:
        await call({"url": url}, allow=["0.0.0.0/0", "::/0"])
    assert caught.value.error_type == "InvalidUrl"
    assert caught.value.retryable is False
    assert "hunter2" not in caught.value.message  # credentials are not echoed


async def test_refusal_message_says_what_and_how(call: Call, dns: FakeDns) -> None:
    dns.table["internal.test"] = ["10.1.2.3"]
    with pytest.raises(PieceError) as caught:
        await call({"url": "http://internal.test/x"}, allow=[])
    assert caught.value.message == (
        "http.request refused host 'internal.test': it resolves to 10.1.2.3: 10.1.2.3 is private "
        "(10.0.0.0/8). Non-public addresses are blocked to prevent server-side request forgery; "
        "to allow it, add the network 10.1.2.3/32 or the host name 'internal.test' to "
        "ALTLAS_HTTP_ALLOW_PRIVATE (comma-separated CIDRs and host names)."
    )
    assert caught.value.details == {
        "host": "internal.test",
        "address": "10.1.2.3",
        "reason": "private",
        "setting": "ALTLAS_HTTP_ALLOW_PRIVATE",
    }


@pytest.mark.parametrize("host", ["0x7f.1", "2130706433", "[::ffff:127.0.0.1]", "127.1"])
async def test_allowed_spelling_connects_to_the_checked_address(
    call: Call, server: LocalServer, host: str
) -> None:
    """With 127.0.0.1/32 allowed, odd spellings reach exactly that address, canonically named."""
    output = await call({"url": f"http://{host}:{server.port}/echo"})
    assert output["status"] == 200
    expected_host = "[::ffff:7f00:1]" if host.startswith("[") else "127.0.0.1"
    assert output["body"]["headers"]["host"] == f"{expected_host}:{server.port}"


async def test_allow_list_is_exact(call: Call, server: LocalServer) -> None:
    with pytest.raises(PieceError, match=r"127\.0\.0\.2 is loopback"):
        await call({"url": f"http://127.0.0.2:{server.port}/echo"}, allow=["127.0.0.1"])


async def test_host_name_entry_allows_the_name(
    call: Call, server: LocalServer, dns: FakeDns
) -> None:
    dns.table["api.test"] = ["127.0.0.1"]
    dns.table["other.test"] = ["127.0.0.1"]
    output = await call({"url": server.url("/echo", host="api.test")}, allow=["api.test"])
    assert output["body"]["headers"]["host"] == f"api.test:{server.port}"
    with pytest.raises(PieceError, match=r"other\.test"):
        await call({"url": server.url("/echo", host="other.test")}, allow=["api.test"])


async def test_wildcard_host_entry(call: Call, server: LocalServer, dns: FakeDns) -> None:
    dns.table["svc.corp.test"] = ["127.0.0.1"]
    dns.table["corp.test"] = ["127.0.0.1"]
    allow = ["*.corp.test"]
    assert (await call({"url": server.url("/echo", host="svc.corp.test")}, allow=allow))[
        "status"
    ] == 200
    with pytest.raises(PieceError, match=r"refused host 'corp\.test'"):
        await call({"url": server.url("/echo", host="corp.test")}, allow=allow)


async def test_host_name_entry_never_allows_metadata(call: Call, dns: FakeDns) -> None:
    dns.table["api.test"] = ["169.254.169.254"]
    with pytest.raises(PieceError) as caught:
        await call({"url": "http://api.test/latest/meta-data/"}, allow=["api.test"])
    assert caught.value.error_type == "ForbiddenAddress"
    assert "never allows a cloud metadata address" in caught.value.message


async def test_every_resolved_address_is_checked(
    call: Call, server: LocalServer, dns: FakeDns
) -> None:
    dns.table["two.test"] = ["127.0.0.1", "10.9.9.9"]
    with pytest.raises(PieceError, match=r"10\.9\.9\.9 is private"):
        await call({"url": server.url("/echo", host="two.test")})
    assert server.requests == []


async def test_rebinding_resolves_once_and_pins(
    call: Call, server: LocalServer, dns: FakeDns
) -> None:
    """A name that answers an allowed address first and a forbidden one afterwards.

    The name is resolved once, and the connection goes to that answer: the system resolver knows
    nothing of `rebind.test`, so reaching the server at all proves the connection was pinned.
    """
    dns.table["rebind.test"] = [["127.0.0.1"], ["169.254.169.254"]]
    output = await call({"url": server.url("/echo", host="rebind.test")})
    assert output["status"] == 200
    assert output["body"]["headers"]["host"] == f"rebind.test:{server.port}"
    assert dns.calls == [("rebind.test", server.port)]


async def test_falls_back_to_the_next_checked_address(
    call: Call, server: LocalServer, dns: FakeDns
) -> None:
    """The first address refuses connections; the second (also checked) is used."""
    dns.table["multi.test"] = ["::1", "127.0.0.1"]
    output = await call(
        {"url": server.url("/echo", host="multi.test")}, allow=["127.0.0.1/32", "::1/128"]
    )
    assert output["status"] == 200


async def test_redirect_to_private_refused_at_the_hop(
    call: Call, server: LocalServer, dns: FakeDns
) -> None:
    dns.table["api.test"] = ["127.0.0.1"]
    dns.table["internal.test"] = ["127.0.0.1"]
    start = server.url("/redirect?to=http://internal.test:{port}/echo", host="api.test")
    with pytest.raises(PieceError) as caught:
        await call({"url": start.format(port=server.port)}, allow=["api.test"])
    assert caught.value.error_type == "ForbiddenAddress"
    assert "internal.test" in caught.value.message
    # The message says where the refused target came from.
    assert f"the 302 redirect of http://api.test:{server.port}/redirect led here" in (
        caught.value.message
    )
    assert server.paths() == ["/redirect"]


@pytest.mark.parametrize(
    "location",
    [
        "http://169.254.169.254/latest/meta-data/",
        "http://0251.0376.0251.0376/",
        "http://2130706433/",
        "http://[::ffff:127.0.0.1]/",
        "//10.0.0.1/admin",
    ],
)
async def test_redirect_spellings_refused(
    call: Call, server: LocalServer, dns: FakeDns, location: str
) -> None:
    dns.table["api.test"] = ["127.0.0.1"]
    url = server.url("/redirect", host="api.test")
    with pytest.raises(PieceError) as caught:
        await call({"url": url, "query": {"to": location}}, allow=["api.test"])
    assert caught.value.error_type == "ForbiddenAddress"
    assert server.paths() == ["/redirect"]


@pytest.mark.parametrize("location", ["file:///etc/passwd", "gopher://api.test/", "ftp://x/"])
async def test_redirect_to_other_scheme_refused(
    call: Call, server: LocalServer, location: str
) -> None:
    with pytest.raises(PieceError) as caught:
        await call({"url": server.url("/redirect"), "query": {"to": location}})
    assert caught.value.error_type == "InvalidUrl"
    assert "redirect of http://127.0.0.1" in caught.value.message


async def test_environment_proxy_is_ignored(
    call: Call, server: LocalServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A proxy would resolve and connect on our behalf, so proxies from the environment are off."""
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    monkeypatch.setenv("ALL_PROXY", "http://127.0.0.1:9")
    assert (await call({"url": server.url("/echo")}))["status"] == 200


async def test_invalid_allow_list_entry(call: Call) -> None:
    with pytest.raises(PieceError) as caught:
        await call({"url": "http://example.test/"}, allow=["10.0.0.0/33"])
    assert caught.value.error_type == "InvalidSetting"
    assert "10.0.0.0/33" in caught.value.message


async def test_allow_list_from_the_environment(
    server: LocalServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """How an operator sets it: ALTLAS_HTTP_ALLOW_PRIVATE, read by the process-wide settings."""
    url = server.url("/echo")
    monkeypatch.delenv("ALTLAS_HTTP_ALLOW_PRIVATE", raising=False)
    get_piece_settings.cache_clear()
    with pytest.raises(PieceError, match="ALTLAS_HTTP_ALLOW_PRIVATE"):
        await run_piece(HttpRequestPiece, {"url": url}, context=StandaloneContext())
    monkeypatch.setenv("ALTLAS_HTTP_ALLOW_PRIVATE", "10.0.0.0/8, 127.0.0.1/32")
    get_piece_settings.cache_clear()
    try:
        output = await run_piece(HttpRequestPiece, {"url": url}, context=StandaloneContext())
    finally:
        monkeypatch.delenv("ALTLAS_HTTP_ALLOW_PRIVATE")
        get_piece_settings.cache_clear()
    assert output["status"] == 200
