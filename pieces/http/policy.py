"""The SSRF gate of `http.request`: resolve once, refuse unless every address may be reached.

Main entry: `resolve_checked`. An `AddressPolicy` holds the operator's allow-list
(`ALTLAS_HTTP_ALLOW_PRIVATE`: networks in CIDR form and host names, `*.suffix` for sub-domains).
Without it only public addresses (`pieces.http.addresses`) pass. A host-name entry allows whatever
that name resolves to except cloud metadata addresses, which only a network entry can allow.
Name resolution is a `Resolver` callable so that tests (and deployments with their own DNS) can
supply one; the default asks the system's resolver (`getaddrinfo`).
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from ipaddress import IPv4Address, IPv6Address, ip_address, ip_network

from pieces.base import PieceError
from pieces.http.addresses import IPAddress, IPNetwork, NonPublic, non_public_reason
from pieces.http.urls import Target, UrlError, canonical_host

ALLOW_SETTING = "ALTLAS_HTTP_ALLOW_PRIVATE"

Resolver = Callable[[str, int], Awaitable[Sequence[IPAddress]]]
"""`await resolver(host, port)`: the addresses of `host`, in the order to try them."""


class InvalidUrlError(PieceError):
    """A URL `http.request` refuses to use (scheme, credentials, malformed host or port)."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(
            f"http.request refused the URL {url!r}: {reason}",
            error_type="InvalidUrl",
            retryable=False,
        )


class UnresolvableHostError(PieceError):
    """The resolver failed for a host name; `cause` says why in plain words.

    Retryable unless the name does not exist. `fetch` reports it naming the whole request.
    """

    def __init__(self, host: str, cause: str, *, retryable: bool) -> None:
        super().__init__(
            f"http.request could not resolve host {host!r}: {cause}",
            error_type="ConnectionError",
            retryable=retryable,
            details={"host": host},
        )
        self.host = host
        self.cause = cause


class ForbiddenAddressError(PieceError):
    """A target that is (or resolves to) an address the SSRF policy does not allow."""

    def __init__(self, target: Target, refusal: NonPublic, *, by_name: bool) -> None:
        resolved = "" if target.address is not None else f"it resolves to {refusal.address}: "
        if refusal.is_metadata and by_name:
            hint = (
                "a host-name entry never allows a cloud metadata address; add the address "
                f"itself ({refusal.address}) to {ALLOW_SETTING} if this is really intended"
            )
        else:
            width = 32 if isinstance(refusal.address, IPv4Address) else 128
            names = f" or the host name {target.host!r}" if target.address is None else ""
            hint = (
                f"to allow it, add the network {refusal.address}/{width}{names} to "
                f"{ALLOW_SETTING} (comma-separated CIDRs and host names)"
            )
        super().__init__(
            f"http.request refused host {target.host!r}: {resolved}{refusal.describe()}. "
            f"Non-public addresses are blocked to prevent server-side request forgery; {hint}.",
            error_type="ForbiddenAddress",
            retryable=False,
            details={
                "host": target.host,
                "address": str(refusal.address),
                "reason": refusal.reason,
                "setting": ALLOW_SETTING,
            },
        )


@dataclass(frozen=True)
class AddressPolicy:
    """Which non-public targets an operator has allowed.

    Attributes:
        networks: allowed networks; an address inside one passes (an IPv4-mapped IPv6 address
            also passes when the IPv4 address it carries is inside one).
        hosts: allowed host names, lower case without a trailing dot; `*.example.internal`
            allows every sub-domain of `example.internal`.
    """

    networks: tuple[IPNetwork, ...] = ()
    hosts: tuple[str, ...] = ()

    @classmethod
    def from_entries(cls, entries: Iterable[str]) -> AddressPolicy:
        """Build a policy from setting entries (`10.0.0.0/8`, `::1`, `api.internal`, `*.corp`).

        Raises:
            PieceError: (`InvalidSetting`) an entry that is neither a network nor a host name.
        """
        networks: list[IPNetwork] = []
        hosts: list[str] = []
        for entry in (e.strip() for e in entries):
            if not entry:
                continue
            try:
                networks.append(ip_network(entry, strict=False))
                continue
            except ValueError:
                pass
            wildcard = entry.startswith("*.")
            try:
                host, address = canonical_host(entry[2:] if wildcard else entry)
            except UrlError as exc:
                raise PieceError(
                    f"{ALLOW_SETTING}: entry {entry!r} is neither a network (CIDR) nor a host "
                    f"name ({exc})",
                    error_type="InvalidSetting",
                    retryable=False,
                ) from None
            if address is not None and not wildcard:
                networks.append(ip_network(address))
            else:
                hosts.append(("*." if wildcard else "") + host.rstrip("."))
        return cls(tuple(networks), tuple(hosts))

    def allows_host(self, host: str) -> bool:
        """Whether the host name itself is on the allow-list."""
        name = host.lower().rstrip(".")
        return any(
            name == entry or (entry.startswith("*.") and name.endswith(entry[1:]))
            for entry in self.hosts
        )

    def allows_address(self, address: IPAddress) -> bool:
        """Whether an allowed network contains the address (or the IPv4 address it maps)."""
        if isinstance(address, IPv6Address):
            address = IPv6Address(int(address))
            mapped = address.ipv4_mapped
            if mapped is not None and any(mapped in net for net in self.networks):
                return True
        return any(address in net for net in self.networks)

    def check(self, target: Target, addresses: Sequence[IPAddress]) -> None:
        """Refuse the target unless every one of its addresses is public or allowed.

        Raises:
            ForbiddenAddressError: naming the first refused address and how to allow it.
        """
        by_name = target.address is None and self.allows_host(target.host)
        for address in addresses:
            refusal = non_public_reason(address)
            if refusal is None or self.allows_address(address):
                continue
            if by_name and not refusal.is_metadata:
                continue
            raise ForbiddenAddressError(target, refusal, by_name=by_name)


@lru_cache(maxsize=8)
def policy_from_setting(entries: tuple[str, ...]) -> AddressPolicy:
    """`AddressPolicy.from_entries`, cached per distinct setting value."""
    return AddressPolicy.from_entries(entries)


async def system_resolver(host: str, port: int) -> list[IPAddress]:
    """Resolve `host` with the system resolver (`getaddrinfo`), each address once, in order."""
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    found: list[IPAddress] = []
    for _family, _type, _proto, _name, sockaddr in infos:
        address = ip_address(str(sockaddr[0]).split("%", 1)[0])
        if address not in found:
            found.append(address)
    return found


async def resolve_checked(
    target: Target, policy: AddressPolicy, resolver: Resolver
) -> tuple[IPAddress, ...]:
    """Resolve the target's host exactly once and check every address against the policy.

    Args:
        target: the parsed URL; an IP literal is not resolved.
        policy: the operator's allow-list.
        resolver: how host names become addresses.

    Returns:
        The addresses to connect to, in order; the caller must connect to one of these and no other.

    Raises:
        ForbiddenAddressError: any address is neither public nor allowed.
        UnresolvableHostError: (`ConnectionError`) the name does not resolve.
    """
    if target.address is not None:
        addresses: tuple[IPAddress, ...] = (target.address,)
    else:
        try:
            addresses = tuple(await resolver(target.host, target.port))
        except OSError as exc:
            raise UnresolvableHostError(
                target.host, _resolver_words(exc), retryable=not _name_does_not_exist(exc)
            ) from None
        if not addresses:
            raise UnresolvableHostError(
                target.host, "the resolver returned no addresses", retryable=True
            )
    policy.check(target, addresses)
    return addresses


_NOT_FOUND = (socket.EAI_NONAME, getattr(socket, "EAI_NODATA", socket.EAI_NONAME))


def _name_does_not_exist(exc: OSError) -> bool:
    return isinstance(exc, socket.gaierror) and exc.errno in _NOT_FOUND


def _resolver_words(exc: OSError) -> str:
    """Why a name did not resolve: no such name, a DNS server that did not answer, or other."""
    detail = exc.strerror or str(exc) or type(exc).__name__
    if _name_does_not_exist(exc):
        return f"no such host name ({detail})"
    if isinstance(exc, socket.gaierror) and exc.errno == socket.EAI_AGAIN:
        return f"the DNS server did not answer in time, try again later ({detail})"
    return detail
