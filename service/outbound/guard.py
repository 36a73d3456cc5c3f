"""The SSRF guard: a host is resolved once, and every address it resolves to must be allowed.

The caller then connects to one of exactly these addresses (see `transport.py`), so a name that
resolves differently a moment later (DNS rebinding) cannot swap in an address that was not
checked. One refused address refuses the host: a name mixing public and private addresses is
a probe, and which one a connection would get is not ours to choose.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable

from service.error_codes import ErrorCode
from service.errors import FerryError
from service.outbound.addresses import AddressPolicy, IPAddress, parse_address

# (host, port) -> every address the host resolves to.
Resolver = Callable[[str, int], Awaitable[list[IPAddress]]]


class UnsafeDestinationError(FerryError):
    """A URL's host is, or resolves to, an address Ferry must not connect to."""

    code = ErrorCode.UNSAFE_DESTINATION
    http_status = 400

    def __init__(self, host: str, reason: str) -> None:
        super().__init__(f"refused to connect to {host}: {reason}")
        self.host = host
        self.reason = reason


class UnresolvableHostError(FerryError):
    """The host has no address (or the resolver failed)."""

    code = ErrorCode.UNRESOLVABLE_HOST

    def __init__(self, host: str, reason: str) -> None:
        super().__init__(f"cannot resolve {host}: {reason}")
        self.host = host


async def system_resolver(host: str, port: int) -> list[IPAddress]:
    """The operating system's resolver, as a connection would use it: this is what makes
    `0x7f000001`, `2130706433` or `127.1` mean 127.0.0.1, so they are checked as that."""
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise UnresolvableHostError(host, str(exc)) from exc
    addresses: list[IPAddress] = []
    for info in infos:
        address = parse_address(str(info[4][0]))
        if address is not None and address not in addresses:
            addresses.append(address)
    return addresses


class DestinationGuard:
    """Resolves hosts and refuses those that reach anything the policy does not allow."""

    def __init__(self, policy: AddressPolicy, resolver: Resolver = system_resolver) -> None:
        self.policy = policy
        self._resolver = resolver

    async def checked_addresses(self, host: str, port: int) -> list[IPAddress]:
        """Every address of `host`, each allowed; raises UnsafeDestinationError otherwise."""
        literal = parse_address(host)
        addresses = [literal] if literal is not None else await self._resolver(host, port)
        if not addresses:
            raise UnresolvableHostError(host, "no addresses")
        for address in addresses:
            reason = self.policy.refusal(address)
            if reason is not None:
                raise UnsafeDestinationError(host, reason)
        return addresses
