"""Where a callback may go: http(s) only, and never, unless configured, to an address
inside our own network (loopback, private, link-local, cloud metadata, unspecified).

Checked when a job is submitted and again right before each delivery, since a host's DNS
answer can change in between (DNS rebinding).
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class CallbackRefused(ValueError):
    """The URL may not receive callbacks; the message says why."""


@dataclass(frozen=True)
class CallbackPolicy:
    allowed_networks: tuple[IPNetwork, ...] = ()
    allowed_hosts: frozenset[str] = frozenset()

    @classmethod
    def parse(cls, raw: str) -> CallbackPolicy:
        """`CALLBACK_ALLOWED_NETWORKS`: comma-separated CIDRs, addresses or host names."""
        networks, hosts = [], set()
        for item in filter(None, (part.strip() for part in raw.split(","))):
            try:
                networks.append(ipaddress.ip_network(item, strict=False))
            except ValueError:
                hosts.add(item.lower().rstrip("."))
        return cls(tuple(networks), frozenset(hosts))

    def check(self, url: str) -> None:
        """Raise CallbackRefused unless `url` may receive a callback now."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise CallbackRefused("callback_url must be an http(s) URL with a host")
        host = parts.hostname.lower().rstrip(".")
        if host in self.allowed_hosts:
            return
        for address in _resolve(host, parts.port or (443 if parts.scheme == "https" else 80)):
            if _internal(address) and not any(address in network for network in self.allowed_networks):
                raise CallbackRefused(f"callback_url resolves to {address}, an internal address")


def _resolve(host: str, port: int) -> set[IPAddress]:
    try:
        answers = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise CallbackRefused(f"callback_url host {host!r} does not resolve") from exc
    return {_unmapped(ipaddress.ip_address(answer[4][0].split("%")[0])) for answer in answers}


def _unmapped(address: IPAddress) -> IPAddress:
    # ::ffff:127.0.0.1 is 127.0.0.1 in disguise.
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _internal(address: IPAddress) -> bool:
    # is_private covers 10/8, 172.16/12, 192.168/16, fc00::/7 and more; link-local covers
    # 169.254.169.254, the cloud metadata address.
    return (
        address.is_loopback
        or address.is_private
        or address.is_link_local
        or address.is_unspecified
        or address.is_multicast
        or address.is_reserved
    )
