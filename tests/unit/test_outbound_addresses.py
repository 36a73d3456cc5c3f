"""The address policy: globally routable only, unless loopback or private networks are allowed;
link-local, unspecified, multicast and reserved never. IPv6 forms that embed an IPv4 address
are judged by that address."""

from __future__ import annotations

import ipaddress

import pytest

from service.outbound.addresses import AddressPolicy, effective_address, parse_address

DEFAULT = AddressPolicy()
LOOPBACK_OK = AddressPolicy(allow_loopback=True)
PRIVATE_OK = AddressPolicy(allow_private=True)

NEVER = [
    "169.254.169.254",  # cloud metadata
    "fe80::1",
    "0.0.0.0",  # unspecified
    "::",
    "224.0.0.1",
    "ff02::1",
    "255.255.255.255",
    "192.0.2.10",  # documentation
    "198.18.0.1",  # benchmarking
    "240.0.0.1",  # reserved
    "::7f00:1",  # IPv4-compatible, deprecated
    "2002:a9fe:a9fe::1",  # 6to4 of 169.254.169.254
    "64:ff9b::a9fe:a9fe",  # NAT64 of 169.254.169.254
]
LOOPBACK = [
    "127.0.0.1",
    "127.1.2.3",
    "::1",
    "::ffff:127.0.0.1",
    "2002:7f00:1::1",
    "64:ff9b::7f00:1",
]
PRIVATE = ["10.0.0.1", "172.16.5.4", "192.168.1.1", "100.64.0.1", "fc00::1", "::ffff:10.1.1.1"]
PUBLIC = ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "::ffff:8.8.8.8", "64:ff9b::808:808"]


def ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    return ipaddress.ip_address(text)


@pytest.mark.parametrize("address", NEVER + LOOPBACK + PRIVATE)
def test_only_global_addresses_by_default(address: str) -> None:
    assert DEFAULT.refusal(ip(address)) is not None


@pytest.mark.parametrize("address", PUBLIC)
def test_global_addresses_are_allowed(address: str) -> None:
    for policy in (DEFAULT, LOOPBACK_OK, PRIVATE_OK):
        assert policy.refusal(ip(address)) is None


@pytest.mark.parametrize("address", NEVER)
def test_some_addresses_are_never_allowed(address: str) -> None:
    everything = AddressPolicy(allow_loopback=True, allow_private=True)
    assert everything.refusal(ip(address)) is not None


@pytest.mark.parametrize("address", LOOPBACK)
def test_loopback_opens_only_with_its_setting(address: str) -> None:
    assert LOOPBACK_OK.refusal(ip(address)) is None
    reason = PRIVATE_OK.refusal(ip(address))
    assert reason is not None
    assert "FERRY_OUTBOUND__ALLOW_LOOPBACK" in reason


@pytest.mark.parametrize("address", PRIVATE)
def test_private_networks_open_only_with_their_setting(address: str) -> None:
    assert PRIVATE_OK.refusal(ip(address)) is None
    reason = LOOPBACK_OK.refusal(ip(address))
    assert reason is not None
    assert "FERRY_OUTBOUND__ALLOW_PRIVATE" in reason


def test_the_refusal_names_the_address_and_what_it_stands_for() -> None:
    reason = DEFAULT.refusal(ip("::ffff:169.254.169.254"))
    assert reason == (
        "::ffff:a9fe:a9fe (that is 169.254.169.254) is a link-local address "
        "(where cloud metadata services answer)"
    )


def test_embedded_ipv4_addresses_are_unwrapped() -> None:
    assert effective_address(ip("::ffff:127.0.0.1")) == ip("127.0.0.1")
    assert effective_address(ip("2002:c000:0201::1")) == ip("192.0.2.1")
    assert effective_address(ip("64:ff9b::0a00:0001")) == ip("10.0.0.1")
    assert effective_address(ip("2606:4700::1")) == ip("2606:4700::1")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1", "127.0.0.1"),
        ("[::1]", "::1"),
        ("fe80::1%eth0", "fe80::1"),
        ("example.com", None),
        ("0x7f000001", None),  # a name to the parser; the resolver decides what it means
    ],
)
def test_parse_address(text: str, expected: str | None) -> None:
    parsed = parse_address(text)
    assert (None if parsed is None else str(parsed)) == expected
