"""URL reading: every IPv4 spelling lands on the address a browser or `inet_aton` would use."""

from __future__ import annotations

import pytest

from pieces.http.urls import UrlError, parse_target, safe_display

SPELLINGS = [
    # (host as written, canonical host)
    ("127.0.0.1", "127.0.0.1"),
    ("2130706433", "127.0.0.1"),  # decimal
    ("0x7f000001", "127.0.0.1"),  # hex
    ("0X7F000001", "127.0.0.1"),
    ("017700000001", "127.0.0.1"),  # octal
    ("0177.0.0.1", "127.0.0.1"),  # octal part
    ("0177.0000.0000.0001", "127.0.0.1"),
    ("127.000.000.001", "127.0.0.1"),
    ("0x7f.0.0.1", "127.0.0.1"),
    ("0x7f.0x0.0x0.0x1", "127.0.0.1"),
    ("0x7f.1", "127.0.0.1"),  # hex + short
    ("127.1", "127.0.0.1"),  # short
    ("127.0.1", "127.0.0.1"),
    ("0x7F.0X0.0.01", "127.0.0.1"),  # mixed
    ("127.0.0.1.", "127.0.0.1"),  # trailing dot
    ("0", "0.0.0.0"),
    ("0x", "0.0.0.0"),
    ("2852039166", "169.254.169.254"),
    ("0xa9fea9fe", "169.254.169.254"),
    ("0251.0376.0251.0376", "169.254.169.254"),
    ("169.254.43518", "169.254.169.254"),
    ("012.0.0.1", "10.0.0.1"),
    ("3232235521", "192.168.0.1"),
    ("0xc0.0xa8.0.1", "192.168.0.1"),
    ("%31%32%37.0.0.1", "127.0.0.1"),  # percent-encoded
    ("\uff11\uff12\uff17.\uff10.\uff10.\uff11", "127.0.0.1"),  # full-width digits
    ("127\u30020\u30020\u30021", "127.0.0.1"),  # ideographic full stops
    ("[::1]", "::1"),
    ("[0:0:0:0:0:0:0:1]", "::1"),
    ("[::ffff:127.0.0.1]", "::ffff:7f00:1"),
    ("[0:0:0:0:0:ffff:127.0.0.1]", "::ffff:7f00:1"),
    ("[::FFFF:7F00:1]", "::ffff:7f00:1"),
    ("EXAMPLE.com", "example.com"),
    ("example.com.", "example.com."),
    ("b\u00fccher.example", "xn--bcher-kva.example"),
]


@pytest.mark.parametrize(("written", "canonical"), SPELLINGS)
def test_host_spellings(written: str, canonical: str) -> None:
    target = parse_target(f"http://{written}:8080/path?q=1")
    assert target.host == canonical
    assert target.port == 8080
    assert target.url.raw_host.decode() == canonical  # httpx reads the rebuilt URL the same way
    assert target.url.raw_path == b"/path?q=1"


INVALID = [
    ("ftp://example.com/", "scheme"),
    ("file:///etc/passwd", "scheme"),
    ("gopher://127.0.0.1:70/", "scheme"),
    ("javascript:alert(1)", "http://"),
    ("example.com/path", "http://"),
    ("//example.com/", "http://"),
    ("http:example.com", "http://"),
    ("http://user:pass@example.com/", "credentials"),
    ("http://user@example.com/", "credentials"),
    ("http://@example.com/", "credentials"),
    ("http://a@b@example.com/", "credentials"),
    ("http://example.com\\@127.0.0.1/", "ambiguous"),
    ("http:///path", "empty"),
    ("http://1.2.3.4.5/", "IPv4"),
    ("http://256.0.0.1/", "out of range"),
    ("http://1.2.3.256/", "out of range"),
    ("http://0x100000000/", "out of range"),
    ("http://127.0.0.0x100/", "out of range"),
    ("http://08.0.0.1/", "IPv4"),
    ("http://foo.123/", "IPv4"),
    ("http://[::1%25lo]/", "zone"),
    ("http://[1.2.3.4]/", "IPv6"),
    ("http://[::1/", "IPv6"),
    ("http://example.com:0/", "port"),
    ("http://example.com:65536/", "port"),
    ("http://example.com:8o/", "port"),
    ("http://exa mple.com/", "not allowed"),
    ("http://a\nb.example/", "control"),
    ("http://example.com/\r\nX: y", "control"),
    ("http://exa*mple.com/", "host name"),
    ("http://%ff.example/", "UTF-8"),
]


@pytest.mark.parametrize(("url", "reason"), INVALID)
def test_invalid_urls(url: str, reason: str) -> None:
    with pytest.raises(UrlError, match=reason):
        parse_target(url)


def test_default_ports_and_host_header() -> None:
    assert parse_target("https://example.com/").host_header == "example.com"
    assert parse_target("https://example.com:443/").port == 443
    assert parse_target("http://example.com:8080/").host_header == "example.com:8080"
    assert parse_target("http://[::1]:81/").host_header == "[::1]:81"


def test_safe_display_hides_credentials_and_query() -> None:
    assert safe_display("http://u:secret@h/x?token=1") == "http://***@h/x?..."
    assert safe_display("https://h/p") == "https://h/p"
