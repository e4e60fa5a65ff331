"""What `http.request` sends (method, query, headers, body) and what the node outputs."""

from __future__ import annotations

import pytest

from tests.pieces.http.conftest import Call
from tests.pieces.http.local_server import LocalServer


async def test_get_outputs_status_headers_and_parsed_json(call: Call, server: LocalServer) -> None:
    output = await call({"url": server.url("/echo")})
    assert output["status"] == 200
    assert output["headers"]["content-type"] == "application/json"
    assert output["headers"]["x-multi"] == "a"
    assert all(name == name.lower() for name in output["headers"])
    assert output["body"]["method"] == "GET"
    assert output["body"]["path"] == "/echo"
    assert output["body"]["headers"]["user-agent"].startswith("altlas-workflow-engine")


async def test_query_is_merged_into_the_url(call: Call, server: LocalServer) -> None:
    output = await call(
        {
            "url": server.url("/echo?a=1"),
            "query": {"b": [1, 2], "c": True, "d": "x y&z", "e": 1.5},
        }
    )
    assert output["body"]["query"] == "a=1&b=1&b=2&c=true&d=x+y%26z&e=1.5"


async def test_headers_are_sent(call: Call, server: LocalServer) -> None:
    output = await call(
        {"url": server.url("/echo"), "headers": {"X-Trace": "abc", "X-Page": 5, "Accept": "x/y"}}
    )
    sent = output["body"]["headers"]
    assert sent["x-trace"] == "abc"
    assert sent["x-page"] == "5"
    assert sent["accept"] == "x/y"


async def test_non_ascii_header_values_are_sent_as_utf8(call: Call, server: LocalServer) -> None:
    output = await call({"url": server.url("/echo"), "headers": {"X-Name": "çay"}})
    received = output["body"]["headers"]["x-name"]  # http.server reads headers as Latin-1
    assert received.encode("latin-1").decode("utf-8") == "çay"


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE"])
async def test_json_body(call: Call, server: LocalServer, method: str) -> None:
    output = await call(
        {"method": method, "url": server.url("/echo"), "json": {"name": "çay", "n": [1, None]}}
    )
    echoed = output["body"]
    assert echoed["method"] == method
    assert echoed["headers"]["content-type"] == "application/json"
    assert echoed["body"] == '{"name":"çay","n":[1,null]}'


async def test_text_body_with_default_and_own_content_type(call: Call, server: LocalServer) -> None:
    plain = await call({"method": "POST", "url": server.url("/echo"), "body": "hello"})
    assert plain["body"]["body"] == "hello"
    assert plain["body"]["headers"]["content-type"] == "text/plain; charset=utf-8"
    xml = await call(
        {
            "method": "POST",
            "url": server.url("/echo"),
            "body": "<a/>",
            "headers": {"content-type": "application/xml"},
        }
    )
    assert xml["body"]["headers"]["content-type"] == "application/xml"


async def test_form_body(call: Call, server: LocalServer) -> None:
    output = await call(
        {
            "method": "POST",
            "url": server.url("/echo"),
            "body": {"grant_type": "client_credentials", "scope": ["a", "b"]},
        }
    )
    echoed = output["body"]
    assert echoed["headers"]["content-type"] == "application/x-www-form-urlencoded"
    assert echoed["body"] == "grant_type=client_credentials&scope=a&scope=b"


async def test_head_has_empty_body(call: Call, server: LocalServer) -> None:
    output = await call({"method": "HEAD", "url": server.url("/echo")})
    assert output["status"] == 200
    assert output["body"] == ""


async def test_json_media_types_are_parsed(call: Call, server: LocalServer) -> None:
    output = await call({"url": server.url("/json")})
    assert output["body"] == {"items": [1, 2], "ok": True}


async def test_text_uses_the_declared_charset(call: Call, server: LocalServer) -> None:
    output = await call({"url": server.url("/text")})
    assert output["body"] == "café"


async def test_invalid_json_comes_back_as_text(call: Call, server: LocalServer) -> None:
    output = await call({"url": server.url("/bad-json")})
    assert output["body"] == "{not json"


async def test_no_content(call: Call, server: LocalServer) -> None:
    output = await call({"url": server.url("/empty")})
    assert output == {"status": 204, "headers": output["headers"], "body": ""}


async def test_gzip_is_decoded(call: Call, server: LocalServer) -> None:
    output = await call({"url": server.url("/gzip?n=1000")})
    assert output["body"] == "\0" * 1000
