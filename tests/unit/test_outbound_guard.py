"""The guard resolves a host once and refuses it if any address is not allowed. The spellings
an attacker uses for the local host are resolved by the real system resolver, as a connection
would resolve them, and refused as what they are."""

from __future__ import annotations

import ipaddress

import pytest

from service.outbound.addresses import AddressPolicy, IPAddress
from service.outbound.guard import (
    DestinationGuard,
    UnresolvableHostError,
    UnsafeDestinationError,
)


class StubResolver:
    """A resolver answering from a table, counting its lookups (in unit tests only)."""

    def __init__(self, table: dict[str, list[str]]) -> None:
        self.table = table
        self.calls: list[str] = []

    async def __call__(self, host: str, port: int) -> list[IPAddress]:
        del port
        self.calls.append(host)
        return [ipaddress.ip_address(address) for address in self.table.get(host, [])]


@pytest.mark.parametrize(
    ("host", "resolves_to"),
    [
        ("0x7f000001", "127.0.0.1"),
        ("2130706433", "127.0.0.1"),
        ("127.1", "127.0.0.1"),
        ("017700000001", "127.0.0.1"),
        ("0", "0.0.0.0"),
        ("localhost", "127.0.0.1"),
        ("::ffff:127.0.0.1", "127.0.0.1"),
        ("169.254.169.254", "169.254.169.254"),
    ],
)
async def test_local_host_spellings_are_refused(host: str, resolves_to: str) -> None:
    guard = DestinationGuard(AddressPolicy())
    with pytest.raises(UnsafeDestinationError) as refused:
        await guard.checked_addresses(host, 80)
    assert resolves_to in refused.value.reason
    assert refused.value.code == "UNSAFE_DESTINATION"


async def test_a_name_resolving_to_a_private_address_is_refused() -> None:
    resolver = StubResolver({"internal.example": ["10.1.2.3"]})
    guard = DestinationGuard(AddressPolicy(allow_loopback=True), resolver)
    with pytest.raises(UnsafeDestinationError) as refused:
        await guard.checked_addresses("internal.example", 443)
    assert "10.1.2.3 is a private address" in str(refused.value)


async def test_one_bad_address_among_good_ones_refuses_the_host() -> None:
    resolver = StubResolver({"mixed.example": ["93.184.216.34", "169.254.169.254"]})
    guard = DestinationGuard(AddressPolicy(), resolver)
    with pytest.raises(UnsafeDestinationError):
        await guard.checked_addresses("mixed.example", 443)


async def test_allowed_hosts_yield_their_checked_addresses_resolved_once() -> None:
    resolver = StubResolver({"hooks.example": ["93.184.216.34", "2606:2800:220:1::1"]})
    guard = DestinationGuard(AddressPolicy(), resolver)
    addresses = await guard.checked_addresses("hooks.example", 443)
    assert [str(address) for address in addresses] == ["93.184.216.34", "2606:2800:220:1::1"]
    assert resolver.calls == ["hooks.example"]


async def test_literal_addresses_are_not_resolved() -> None:
    resolver = StubResolver({})
    guard = DestinationGuard(AddressPolicy(), resolver)
    assert [str(a) for a in await guard.checked_addresses("[2606:4700::1111]", 443)] == [
        "2606:4700::1111"
    ]
    assert resolver.calls == []


async def test_a_host_without_addresses_is_unresolvable() -> None:
    guard = DestinationGuard(AddressPolicy(), StubResolver({}))
    with pytest.raises(UnresolvableHostError):
        await guard.checked_addresses("nowhere.example", 443)
    with pytest.raises(UnresolvableHostError):
        await DestinationGuard(AddressPolicy()).checked_addresses("no-such-host.invalid", 443)
