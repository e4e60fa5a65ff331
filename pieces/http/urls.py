"""Reading a request URL the way a browser would, so the address checked is the one connected to.

Main entry: `parse_target`. Host names are read with the WHATWG URL rules rather than left to the
system resolver: a host that *ends in a number* is an IPv4 address in any of the spellings
`inet_aton` and browsers accept (`2130706433`, `0x7f.1`, `0177.0.0.1`, `127.1`, `127.0.0.1.`),
percent-escapes in the host are decoded, and non-ASCII hosts are mapped with UTS #46 (so full-width
digits and ideographic full stops become ASCII) before that test. The result is one canonical
host (dotted-quad IPv4, compressed IPv6, or an ASCII domain name) that both the address policy and
httpx see; the URL is rebuilt with it and re-parsed by httpx, and any disagreement is refused.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address
from urllib.parse import unquote

import httpx
import idna

from pieces.http.addresses import IPAddress

DEFAULT_PORTS = {"http": 80, "https": 443}

# The same split httpx applies (scheme "://" authority, authority ends at / ? #), plus backslash,
# which WHATWG treats as a path separator in http(s) URLs: refusing it keeps the two readings equal.
_URL = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*)://(?P<authority>[^/?#\\]*)(?P<rest>.*)$")
_PORT = re.compile(r"^[0-9]{1,5}$")
_ASCII_LABEL = re.compile(r"^[a-z0-9_](?:[a-z0-9_\-]*[a-z0-9_])?$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_SPACE_OR_CONTROL = re.compile(r"[\x00-\x20\x7f]")


class UrlError(ValueError):
    """A URL `http.request` will not use; the message says what is wrong with it."""


@dataclass(frozen=True)
class Target:
    """One request target after parsing: what to resolve, what to send as `Host`, what to verify.

    Attributes:
        url: the canonical URL (host rewritten to its canonical spelling).
        scheme: `http` or `https`.
        host: the canonical host without brackets (`example.com`, `127.0.0.1`, `::1`).
        port: the port to connect to (the scheme's default when the URL names none).
        address: the host's address when the host is an IP literal, else `None` (resolve it).
    """

    url: httpx.URL
    scheme: str
    host: str
    port: int
    address: IPAddress | None

    @property
    def origin(self) -> tuple[str, str, int]:
        """Scheme, host and port: credentials are dropped when a redirect changes it."""
        return (self.scheme, self.host, self.port)

    @property
    def host_header(self) -> str:
        """The `Host` header: the host as written (bracketed IPv6), port only when not default."""
        host = f"[{self.host}]" if isinstance(self.address, IPv6Address) else self.host
        return host if DEFAULT_PORTS[self.scheme] == self.port else f"{host}:{self.port}"

    def display(self) -> str:
        """Scheme, host, port and path without the query (which may carry secrets)."""
        return f"{self.scheme}://{self.host_header}{self.url.path}"


def is_absolute(url: str) -> bool:
    """Whether `url` starts with a scheme (`http:`, `ftp:`, `javascript:`, ...)."""
    return re.match(r"^[A-Za-z][A-Za-z0-9+.\-]*:", url) is not None


def safe_display(url: str) -> str:
    """A URL fit for messages: credentials replaced by `***`, the query (may hold secrets) cut."""
    text = re.sub(r"^([^:/?#]*://)[^/?#]*@", r"\1***@", url.strip())
    return text.split("?", 1)[0] + ("?..." if "?" in text else "")


def _ipv4_number(part: str) -> int | None:
    """One WHATWG IPv4 number: `0x..` hex, `0..` octal, else decimal; `None` if not a number."""
    text, base = part, 10
    if len(text) >= 2 and text[:2] in ("0x", "0X"):
        text, base = text[2:], 16
    elif len(text) >= 2 and text[0] == "0":
        text, base = text[1:], 8
    if text == "":
        return 0
    digits = {10: "0123456789", 8: "01234567", 16: "0123456789abcdefABCDEF"}[base]
    if not all(ch in digits for ch in text):
        return None
    return int(text, base)


def ends_in_a_number(host: str) -> bool:
    """WHATWG's "ends in a number" test: such a host must be an IPv4 address or is invalid."""
    parts = host.split(".")
    if parts[-1] == "" and len(parts) > 1:
        parts.pop()
    last = parts[-1]
    if last == "":
        return False
    return (last.isascii() and last.isdigit()) or _ipv4_number(last) is not None


def parse_ipv4(host: str) -> IPv4Address:
    """Read an IPv4 host in any WHATWG spelling (`127.1`, `0x7f.0.0.1`, `2130706433`, ...).

    Args:
        host: a host for which `ends_in_a_number` is true.

    Returns:
        The address those numbers denote.

    Raises:
        UrlError: the host ends in a number but is no valid IPv4 address (`1.2.3.4.5`, `256.1.1.1`).
    """
    parts = host.split(".")
    if parts[-1] == "" and len(parts) > 1:
        parts.pop()
    numbers = [_ipv4_number(part) if part else None for part in parts]
    if len(parts) > 4 or any(n is None for n in numbers):
        raise UrlError(f"host {host!r} ends in a number but is not a valid IPv4 address")
    values = [n for n in numbers if n is not None]
    *leading, last = values
    if any(n > 255 for n in leading) or last >= 256 ** (5 - len(values)):
        raise UrlError(f"host {host!r} is an IPv4 address with a part out of range")
    value = last
    for index, number in enumerate(leading):
        value += number << (8 * (3 - index))
    return IPv4Address(value)


def _domain(host: str) -> str:
    """An ASCII, lower-case domain name, or `UrlError`."""
    if not host.isascii():
        try:
            host = idna.encode(host, uts46=True, transitional=False).decode("ascii")
        except idna.IDNAError as exc:
            raise UrlError(f"host {host!r} is not a valid internationalised name: {exc}") from None
    host = host.lower()
    labels = host[:-1].split(".") if host.endswith(".") else host.split(".")
    if len(host) > 254 or not all(len(lb) <= 63 and _ASCII_LABEL.match(lb) for lb in labels):
        raise UrlError(f"host {host!r} is not a valid host name")
    return host


def canonical_host(raw: str) -> tuple[str, IPAddress | None]:
    """The canonical spelling of a URL's host and, for IP literals, its address.

    Args:
        raw: the host as written in the URL, IPv6 in brackets.

    Returns:
        `(host, address)`: `("127.0.0.1", IPv4Address(...))` for `0x7f.1`,
        `("::1", IPv6Address(...))` for `[::1]`, `("example.com", None)` for `EXAMPLE.com`.

    Raises:
        UrlError: empty, malformed or ambiguous hosts.
    """
    if raw.startswith("[") and raw.endswith("]"):
        literal = raw[1:-1]
        if "%" in literal:
            raise UrlError(f"host {raw!r}: IPv6 zone identifiers are not supported")
        try:
            v6 = IPv6Address(literal)
        except ValueError:
            raise UrlError(f"host {raw!r} is not a valid IPv6 address") from None
        return v6.compressed, v6
    try:
        host = unquote(raw, errors="strict")
    except UnicodeDecodeError:
        raise UrlError(f"host {raw!r} has percent-escapes that are not UTF-8") from None
    if not host.isascii():
        try:
            host = idna.uts46_remap(host, std3_rules=False, transitional=False)
        except idna.IDNAError as exc:
            raise UrlError(f"host {raw!r} is not a valid internationalised name: {exc}") from None
    if host == "" or _SPACE_OR_CONTROL.search(host) or any(ch in host for ch in "%[]@:/\\?#"):
        raise UrlError(f"host {raw!r} is empty or has characters not allowed in a host")
    if ends_in_a_number(host):
        v4 = parse_ipv4(host)
        return str(v4), v4
    return _domain(host), None


def parse_target(url: str) -> Target:
    """Parse and canonicalise an http(s) URL; refuse what `http.request` must not fetch.

    Args:
        url: an absolute `http://` or `https://` URL.

    Returns:
        The `Target`, whose `url` httpx reads exactly as this function did.

    Raises:
        UrlError: another scheme, credentials in the URL, a bad host or port, control characters,
            or a URL httpx would read differently.

    Examples:
        ```python
        parse_target("http://0x7f.1:8080/x").host  # '127.0.0.1'
        parse_target("https://Example.COM/a?b=1").url  # URL('https://example.com/a?b=1')
        ```
    """
    text = url.strip()
    if _CONTROL.search(text):
        raise UrlError("the URL contains control characters (tab, newline, ...)")
    match = _URL.match(text)
    if match is None:
        raise UrlError("the URL must be absolute and start with http:// or https://")
    scheme = match["scheme"].lower()
    if scheme not in DEFAULT_PORTS:
        raise UrlError(f"scheme {scheme!r} is not allowed; only http and https are")
    authority = match["authority"]
    if "@" in authority:
        raise UrlError(
            "credentials in the URL (user:password@) are not allowed; send them in a header, "
            "e.g. Authorization with a secret: {{ secrets.NAME }}"
        )
    host_text, port = _split_port(authority, scheme)
    host, address = canonical_host(host_text)
    netloc = f"[{host}]" if isinstance(address, IPv6Address) else host
    if port != DEFAULT_PORTS[scheme]:
        netloc += f":{port}"
    try:
        parsed = httpx.URL(f"{scheme}://{netloc}{match['rest']}")
    except httpx.InvalidURL as exc:
        raise UrlError(f"invalid URL: {exc}") from None
    if parsed.raw_host.decode("ascii") != host or (parsed.port or DEFAULT_PORTS[scheme]) != port:
        raise UrlError("the URL is ambiguous: its host reads differently to different parsers")
    return Target(parsed, scheme, host, port, address)


def _split_port(authority: str, scheme: str) -> tuple[str, int]:
    host, port_text = authority, ""
    if authority.startswith("["):
        end = authority.find("]")
        host, rest = authority[: end + 1], authority[end + 1 :]
        if end < 0 or (rest and not rest.startswith(":")):
            raise UrlError(f"host {authority!r} is not a valid bracketed IPv6 address")
        port_text = rest[1:]
    elif ":" in authority:
        host, port_text = authority.rsplit(":", 1)
    if port_text == "":
        return host, DEFAULT_PORTS[scheme]
    if not _PORT.match(port_text) or not 0 < int(port_text) <= 65535:
        raise UrlError(f"port {port_text!r} is not a number from 1 to 65535")
    return host, int(port_text)
