"""Which IP addresses Ferry may connect to on a user's behalf.

Only globally routable addresses, by default. Loopback and private networks open only by an
explicit setting; link-local (where cloud metadata services answer, 169.254.169.254),
unspecified (`0.0.0.0` reaches the local host on Linux), multicast and reserved addresses never.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from service.config import OutboundSettings

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Networks of the deployment's own making, which `allow_private` opens. 100.64/10 is carrier-grade
# NAT space: not globally routable, and in clouds often internal.
_PRIVATE_NETWORKS = tuple(
    ipaddress.ip_network(network)
    for network in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "fc00::/7")
)
# NAT64 (RFC 6052): a gateway turns 64:ff9b::a.b.c.d into a connection to a.b.c.d.
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


@dataclass(frozen=True)
class AddressPolicy:
    """The exceptions a deployment allows to "globally routable addresses only"."""

    allow_loopback: bool = False
    allow_private: bool = False

    @classmethod
    def from_settings(cls, settings: OutboundSettings) -> AddressPolicy:
        return cls(allow_loopback=settings.allow_loopback, allow_private=settings.allow_private)

    def refusal(self, address: IPAddress) -> str | None:
        """Why `address` must not be connected to, or None when it may."""
        target = effective_address(address)
        reason = self._reason(target)
        if reason is None:
            return None
        shown = str(address) if target == address else f"{address} (that is {target})"
        return f"{shown} is {reason}"

    def _reason(self, target: IPAddress) -> str | None:
        if target.is_loopback:
            allowed = self.allow_loopback
            reason = "a loopback address (allowed only with FERRY_OUTBOUND__ALLOW_LOOPBACK)"
        elif target.is_unspecified:
            allowed, reason = False, "the unspecified address (it reaches the local host)"
        elif target.is_link_local:
            allowed, reason = False, "a link-local address (where cloud metadata services answer)"
        elif target.is_multicast:
            allowed, reason = False, "a multicast address"
        elif any(target in network for network in _PRIVATE_NETWORKS):
            allowed = self.allow_private
            reason = "a private address (allowed only with FERRY_OUTBOUND__ALLOW_PRIVATE)"
        elif not target.is_global or target.is_reserved:
            allowed, reason = False, "not a globally routable address"
        else:
            return None
        return None if allowed else reason


def effective_address(address: IPAddress) -> IPAddress:
    """The IPv4 address an IPv6 address stands for, when it embeds one that a connection to it
    would reach: IPv4-mapped (::ffff:a.b.c.d), 6to4 (2002::/16) and NAT64 (64:ff9b::/96)."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return address.ipv4_mapped
        if address.sixtofour is not None:
            return address.sixtofour
        if address in _NAT64:
            return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return address


def parse_address(text: str) -> IPAddress | None:
    """`text` as an IP address (brackets and an IPv6 zone dropped), or None if it is a name."""
    candidate = text.removeprefix("[").removesuffix("]").split("%", 1)[0]
    try:
        return ipaddress.ip_address(candidate)
    except ValueError:
        return None
