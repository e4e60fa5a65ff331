"""Redirects: method and body rules, the hop limit, and credentials across origins."""

from __future__ import annotations

from urllib.parse import quote

import pytest

from pieces.base import PieceError
from tests.pieces.http.conftest import Call, FakeDns
from tests.pieces.http.local_server import LocalServer


def redirect(server: LocalServer, to: str, code: int = 302, host: str = "127.0.0.1") -> str:
    return server.url(f"/redirect?code={code}&to={quote(to, safe='')}", host=host)


@pytest.mark.parametrize(
    ("code", "method", "sent_method", "keeps_body"),
    [
        (301, "POST", "GET", False),
        (302, "POST", "GET", False),
        (303, "POST", "GET", False),
        (303, "PUT", "GET", False),
        (303, "DELETE", "GET", False),
        (307, "POST", "POST", True),
        (308, "PUT", "PUT", True),
        (301, "PUT", "PUT", True),
        (302, "PATCH", "PATCH", True),
    ],
)
async def test_method_and_body_rules(
    call: Call, server: LocalServer, code: int, method: str, sent_method: str, keeps_body: bool
) -> None:
    output = await call(
        {"method": method, "url": redirect(server, "/echo", code), "json": {"a": 1}}
    )
    echoed = output["body"]
    assert echoed["method"] == sent_method
    assert echoed["body"] == ('{"a":1}' if keeps_body else "")
    assert ("content-type" in echoed["headers"]) is keeps_body


async def test_head_stays_head_on_303(call: Call, server: LocalServer) -> None:
    await call({"method": "HEAD", "url": redirect(server, "/echo", 303)})
    assert [r["method"] for r in server.requests] == ["HEAD", "HEAD"]


async def test_relative_location(call: Call, server: LocalServer) -> None:
    output = await call({"url": redirect(server, "echo?from=relative")})
    assert output["body"]["query"] == "from=relative"


async def test_not_following_returns_the_redirect(call: Call, server: LocalServer) -> None:
    url = redirect(server, "/echo")
    output = await call({"url": url, "follow_redirects": False, "expect_status": "3xx"})
    assert output["status"] == 302
    assert output["headers"]["location"] == "/echo"
    with pytest.raises(PieceError) as caught:
        await call({"url": url, "follow_redirects": False})
    assert caught.value.error_type == "HttpStatusError"
    assert "redirect that was not followed" in caught.value.message
    assert server.paths() == ["/redirect", "/redirect"]


def chain(server: LocalServer, hops: int) -> str:
    url = server.url("/echo")
    for _ in range(hops):
        url = redirect(server, url)
    return url


async def test_at_most_max_redirects(call: Call, server: LocalServer) -> None:
    assert (await call({"url": chain(server, 2)}, max_redirects=2))["status"] == 200
    server.requests.clear()
    with pytest.raises(PieceError) as caught:
        await call({"url": chain(server, 3)}, max_redirects=2)
    assert caught.value.error_type == "TooManyRedirects"
    assert caught.value.retryable is False
    assert server.paths() == ["/redirect"] * 3


async def test_default_limit_is_five(call: Call, server: LocalServer) -> None:
    assert (await call({"url": chain(server, 5)}))["status"] == 200
    with pytest.raises(PieceError, match="more than 5 redirects"):
        await call({"url": chain(server, 6)})


SECRETS = {"Authorization": "Bearer s3cret", "Cookie": "session=abc", "X-Custom": "kept"}


async def test_credentials_dropped_across_origins(
    call: Call, server: LocalServer, other_server: LocalServer
) -> None:
    """Another port is another origin: Authorization and Cookie do not follow the redirect."""
    await call({"url": redirect(server, other_server.url("/echo")), "headers": SECRETS})
    first, second = server.requests[0]["headers"], other_server.requests[0]["headers"]
    assert first["authorization"] == "Bearer s3cret"
    assert first["cookie"] == "session=abc"
    assert "authorization" not in second
    assert "cookie" not in second
    assert second["x-custom"] == "kept"


async def test_credentials_dropped_across_host_names(
    call: Call, server: LocalServer, dns: FakeDns
) -> None:
    """Same address and port, another host name: still another origin."""
    dns.table.update({"a.test": ["127.0.0.1"], "b.test": ["127.0.0.1"]})
    start = redirect(server, server.url("/echo", host="b.test"), host="a.test")
    output = await call({"url": start, "headers": SECRETS})
    assert "authorization" not in output["body"]["headers"]
    assert output["body"]["headers"]["host"] == f"b.test:{server.port}"


async def test_credentials_kept_on_the_same_origin(call: Call, server: LocalServer) -> None:
    output = await call({"url": redirect(server, "/echo"), "headers": SECRETS})
    assert output["body"]["headers"]["authorization"] == "Bearer s3cret"
    assert output["body"]["headers"]["cookie"] == "session=abc"


async def test_credentials_stay_dropped_after_returning(
    call: Call, server: LocalServer, other_server: LocalServer
) -> None:
    back = redirect(other_server, server.url("/echo"))
    output = await call({"url": redirect(server, back), "headers": SECRETS})
    assert "authorization" not in output["body"]["headers"]
    assert "cookie" not in output["body"]["headers"]
