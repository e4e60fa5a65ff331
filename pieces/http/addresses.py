"""Which IP addresses count as public for `http.request`. Main entry: `non_public_reason`.

The SSRF policy is an explicit table of the IANA special-purpose ranges plus the cloud metadata
services, not Python's `ipaddress` flags alone: those miss carrier-grade NAT (`100.64.0.0/10` is
not `is_private`) and do not look inside IPv6 forms that carry an IPv4 address. An IPv6 address
that embeds an IPv4 address (IPv4-mapped `::ffff:a.b.c.d`, IPv4-compatible `::a.b.c.d`,
IPv4-translated `::ffff:0:a.b.c.d`, NAT64 `64:ff9b::/96`, 6to4 `2002::/16`, Teredo `2001::/32`
with its XOR-obfuscated client) is judged by the IPv4 address it carries as well as by its own
range. Anything not positively global unicast (IPv6 outside `2000::/3`) is refused.

Example:
    ```python
    from ipaddress import ip_address

    non_public_reason(ip_address("::ffff:127.0.0.1")).describe()
    # '::ffff:7f00:1 embeds 127.0.0.1 (IPv4-mapped), which is loopback (127.0.0.0/8)'
    non_public_reason(ip_address("93.184.215.14"))  # None: public
    ```
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_network

IPAddress = IPv4Address | IPv6Address
IPNetwork = IPv4Network | IPv6Network

METADATA = "a cloud metadata service"


def _table(*rows: tuple[str, str]) -> tuple[tuple[IPNetwork, str], ...]:
    return tuple((ip_network(cidr), reason) for cidr, reason in rows)


# Most specific first: the first matching row names the reason.
_IPV4_RANGES = _table(
    ("169.254.169.254/32", f"{METADATA} (AWS, GCP, Azure, DigitalOcean, OpenStack)"),
    ("169.254.170.2/32", f"{METADATA} (AWS ECS task metadata)"),
    ("100.100.100.200/32", f"{METADATA} (Alibaba Cloud)"),
    ("192.0.0.192/32", f"{METADATA} (Oracle Cloud)"),
    ("168.63.129.16/32", f"{METADATA} (Azure WireServer)"),
    ("0.0.0.0/32", "unspecified"),
    ("0.0.0.0/8", "in 'this network'"),
    ("10.0.0.0/8", "private"),
    ("100.64.0.0/10", "carrier-grade NAT (shared address space)"),
    ("127.0.0.0/8", "loopback"),
    ("169.254.0.0/16", "link-local"),
    ("172.16.0.0/12", "private"),
    ("192.0.0.0/24", "reserved for IETF protocol assignments"),
    ("192.0.2.0/24", "reserved for documentation (TEST-NET-1)"),
    ("192.88.99.0/24", "6to4 relay anycast"),
    ("192.168.0.0/16", "private"),
    ("198.18.0.0/15", "reserved for benchmarking"),
    ("198.51.100.0/24", "reserved for documentation (TEST-NET-2)"),
    ("203.0.113.0/24", "reserved for documentation (TEST-NET-3)"),
    ("224.0.0.0/4", "multicast"),
    ("255.255.255.255/32", "broadcast"),
    ("240.0.0.0/4", "reserved"),
)

_IPV6_RANGES = _table(
    ("fd00:ec2::254/128", f"{METADATA} (AWS, IPv6)"),
    ("::/128", "unspecified"),
    ("::1/128", "loopback"),
    ("64:ff9b:1::/48", "local-use NAT64 (may embed any IPv4 address)"),
    ("100::/64", "discard-only"),
    ("2001:2::/48", "reserved for benchmarking"),
    ("2001:db8::/32", "reserved for documentation"),
    ("2001::/23", "reserved for IETF protocol assignments"),
    ("3fff::/20", "reserved for documentation"),
    ("5f00::/16", "reserved for SRv6 segment identifiers"),
    ("fc00::/7", "unique local (private)"),
    ("fe80::/10", "link-local"),
    ("fec0::/10", "site-local (deprecated)"),
    ("ff00::/8", "multicast"),
)

_GLOBAL_UNICAST = IPv6Network("2000::/3")
_MAPPED = IPv6Network("::ffff:0:0/96")
_TRANSLATED = IPv6Network("::ffff:0:0:0/96")
_COMPATIBLE = IPv6Network("::/96")
_NAT64 = IPv6Network("64:ff9b::/96")
_SIX_TO_FOUR = IPv6Network("2002::/16")
_TEREDO = IPv6Network("2001::/32")


@dataclass(frozen=True)
class NonPublic:
    """Why an address is not public.

    Attributes:
        address: the address that was judged.
        reason: the kind of range, e.g. `loopback`, `carrier-grade NAT (shared address space)`.
        network: the range the (embedded) address falls in.
        embedded: the IPv4 address found inside an IPv6 form, when that is what was refused.
        form: how it was embedded (`IPv4-mapped`, `NAT64`, `6to4`, `Teredo client`, ...).
    """

    address: IPAddress
    reason: str
    network: IPNetwork | None = None
    embedded: IPv4Address | None = None
    form: str | None = None

    @property
    def is_metadata(self) -> bool:
        """Whether the address is a cloud metadata endpoint (never allowed by host name)."""
        return self.reason.startswith(METADATA)

    def describe(self) -> str:
        """A phrase for error messages: `::ffff:7f00:1 embeds 127.0.0.1 (IPv4-mapped), ...`."""
        where = f" ({self.network})" if self.network is not None else ""
        if self.embedded is not None:
            return (
                f"{self.address} embeds {self.embedded} ({self.form}), "
                f"which is {self.reason}{where}"
            )
        return f"{self.address} is {self.reason}{where}"


def embedded_ipv4(address: IPv6Address) -> list[tuple[str, IPv4Address]]:
    """The IPv4 addresses an IPv6 address carries, each with the name of its form.

    Args:
        address: any IPv6 address.

    Returns:
        `[]` for an ordinary address; one entry for IPv4-mapped, -translated, -compatible, NAT64
        and 6to4; two for Teredo (server, and client with its obfuscation undone).
    """
    value = int(address)
    low32 = IPv4Address(value & 0xFFFFFFFF)
    if address in _MAPPED:
        return [("IPv4-mapped", low32)]
    if address in _TRANSLATED:
        return [("IPv4-translated", low32)]
    if address in _COMPATIBLE and value > 1:
        return [("IPv4-compatible", low32)]
    if address in _NAT64:
        return [("NAT64", low32)]
    if address in _SIX_TO_FOUR:
        return [("6to4", IPv4Address((value >> 80) & 0xFFFFFFFF))]
    if address in _TEREDO:
        server = IPv4Address((value >> 64) & 0xFFFFFFFF)
        client = IPv4Address(~value & 0xFFFFFFFF)
        return [("Teredo server", server), ("Teredo client", client)]
    return []


def _lookup(address: IPAddress) -> tuple[IPNetwork, str] | None:
    table = _IPV4_RANGES if isinstance(address, IPv4Address) else _IPV6_RANGES
    for network, reason in table:
        if address in network:
            return network, reason
    return None


def _ipv4_reason(address: IPv4Address) -> NonPublic | None:
    found = _lookup(address)
    if found is not None:
        return NonPublic(address, found[1], found[0])
    if not address.is_global:  # belt and braces: anything Python knows to be special
        return NonPublic(address, "not globally reachable")
    return None


def non_public_reason(address: IPAddress) -> NonPublic | None:
    """Why `address` must not be reached by default, or `None` when it is public.

    Args:
        address: a resolved or literal address (a scope id such as `%eth0` is ignored).

    Returns:
        `None` for a public address; otherwise a `NonPublic` naming the range.

    Examples:
        ```python
        non_public_reason(ip_address("100.64.0.1")).reason  # 'carrier-grade NAT (shared ...)'
        non_public_reason(ip_address("64:ff9b::a00:1")).embedded  # IPv4Address('10.0.0.1')
        non_public_reason(ip_address("2606:4700::1111"))  # None
        ```
    """
    if isinstance(address, IPv4Address):
        return _ipv4_reason(address)
    address = IPv6Address(int(address))  # drop any scope id
    for form, inner in embedded_ipv4(address):
        inner_reason = _ipv4_reason(inner)
        if inner_reason is not None:
            return NonPublic(
                address, inner_reason.reason, inner_reason.network, embedded=inner, form=form
            )
    found = _lookup(address)
    if found is not None:
        return NonPublic(address, found[1], found[0])
    if address in _MAPPED or address in _NAT64:
        return None  # reaches the public IPv4 address it carries
    if address in _TRANSLATED or address in _COMPATIBLE:
        return NonPublic(address, "a deprecated IPv4-in-IPv6 form (not routable)")
    if address not in _GLOBAL_UNICAST:
        return NonPublic(address, "outside the global unicast range", _GLOBAL_UNICAST)
    if not address.is_global:
        return NonPublic(address, "not globally reachable")
    return None


def is_public(address: IPAddress) -> bool:
    """Whether `http.request` may reach `address` without an allow-list entry."""
    return non_public_reason(address) is None
