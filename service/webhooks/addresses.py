"""Where a callback may go: an http(s) URL whose host resolves only to public addresses,
unless `CALLBACK_ALLOWED_NETWORKS` lists the address (or the host).

The URL is parsed once, strictly, and its host encoded once (IDNA 2008 with UTS 46
mapping); the result (`CallbackTarget`) is what the check resolves and what the delivery
connects to, so the two can never read the URL differently. The host is resolved once,
within a deadline, and a delivery connects to exactly the addresses this module checked
(a second resolution could answer differently: DNS rebinding).
"""

from __future__ import annotations

import ipaddress
import re
import socket
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import cast
from urllib.parse import urlsplit

import idna

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
# host, port -> the addresses it resolves to (text); raises OSError when it does not resolve.
Resolver = Callable[[str, int], Iterable[str]]

DEFAULT_PORTS = {"http": 80, "https": 443}
# Every character a client could use to make two URL parsers disagree (a backslash is a
# path separator to some and part of the userinfo to others), or that urlsplit would drop.
_AMBIGUOUS = re.compile(r"[\x00-\x20\x7f\\]")
_BRACKETED = re.compile(r"\[([0-9A-Fa-f:.]+)\](?::([0-9]{1,5}))?")
_NAMED = re.compile(r"([^\[\]:]+)(?::([0-9]{1,5}))?")
_DNS_LABEL = re.compile(r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?")
# Not globally reachable although Python 3.11's `is_global` says so, per IANA's
# special-purpose registries; 2002::/16 (6to4) tunnels to any IPv4 address, internal ones too.
_NOT_GLOBAL = tuple(
    ipaddress.ip_network(cidr)
    for cidr in (
        "192.0.0.0/24", "192.31.196.0/24", "192.52.193.0/24", "192.88.99.0/24", "192.175.48.0/24",
        "2002::/16", "3fff::/20", "5f00::/16",
    )
)  # fmt: skip
_IPV6_GLOBAL_UNICAST = ipaddress.ip_network("2000::/3")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")  # the last 32 bits are the IPv4 address reached


class CallbackRefused(ValueError):
    """The URL may not receive callbacks; the message says why (never which address)."""


@dataclass(frozen=True)
class CallbackTarget:
    """A callback URL, parsed once: what is checked and what is connected to."""

    scheme: str
    host: str  # lower-case ASCII: an IDNA-encoded name, or an IP address (IPv6 without brackets)
    port: int
    target: str  # path and query, as sent in the request line

    @property
    def ip_literal(self) -> IPAddress | None:
        try:
            return ipaddress.ip_address(self.host)
        except ValueError:
            return None

    @property
    def authority(self) -> str:
        """`Host` header: the URL's host, and its port unless the scheme's default."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == DEFAULT_PORTS[self.scheme] else f"{host}:{self.port}"


def parse_callback_url(url: str) -> CallbackTarget:
    """Parse strictly: http(s), a host, no userinfo, a port in 1..65535, no backslash."""
    if _AMBIGUOUS.search(url):
        raise CallbackRefused("callback_url must not contain spaces, control characters or backslashes")
    try:
        parts = urlsplit(url)
    except ValueError as exc:  # e.g. an unclosed IPv6 bracket
        raise CallbackRefused("callback_url is not a valid URL") from exc
    if parts.scheme not in DEFAULT_PORTS or not parts.netloc:
        raise CallbackRefused("callback_url must be an http(s) URL with a host")
    if "@" in parts.netloc:
        raise CallbackRefused("callback_url must not contain a user name or password")
    if bracketed := _BRACKETED.fullmatch(parts.netloc):
        host, port = _ipv6_literal(bracketed[1]), bracketed[2]
    elif named := _NAMED.fullmatch(parts.netloc):
        host, port = _host_name(named[1]), named[2]
    else:
        raise CallbackRefused("callback_url has no valid host and port")
    port_number = DEFAULT_PORTS[parts.scheme] if port is None else int(port)
    if not 1 <= port_number <= 65535:
        raise CallbackRefused("callback_url's port must be between 1 and 65535")
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return CallbackTarget(parts.scheme, host, port_number, target)


def _ipv6_literal(text: str) -> str:
    try:
        return str(ipaddress.IPv6Address(text))
    except ValueError as exc:
        raise CallbackRefused("callback_url has a malformed IPv6 address") from exc


def _host_name(text: str) -> str:
    """The one ASCII form of a host: IPv4 and DNS names as they are (lower case), other
    names through IDNA 2008 with UTS 46 mapping (`ß` stays `ß`: xn--zca)."""
    if text.isascii():
        name = text.lower()
    else:
        try:
            name = idna.encode(text, uts46=True).decode("ascii")
        except idna.IDNAError as exc:
            raise CallbackRefused("callback_url's host is not a valid internationalised domain name") from exc
    name = name.removesuffix(".")
    labels = name.split(".")
    if len(name) > 253 or not all(_DNS_LABEL.fullmatch(label) for label in labels):
        raise CallbackRefused("callback_url's host is not a valid host name")
    return name


def system_resolver(host: str, port: int) -> list[str]:
    """The system's resolver, as `socket.getaddrinfo` answers for a TCP connection."""
    answers = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    # An address string for AF_INET/AF_INET6 (typeshed allows an int for other families).
    return [cast(str, answer[4][0]) for answer in answers]


def is_public(address: IPAddress) -> bool:
    """Globally reachable, and not an IPv6 form that leads to an internal IPv4 address."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return is_public(address.ipv4_mapped)
        if address in _NAT64:
            return is_public(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
        if address not in _IPV6_GLOBAL_UNICAST:
            return False
    return address.is_global and not address.is_multicast and not any(address in net for net in _NOT_GLOBAL)


@dataclass(frozen=True)
class CallbackPolicy:
    allowed_networks: tuple[IPNetwork, ...] = ()
    allowed_hosts: frozenset[str] = frozenset()
    resolve_timeout_s: float = 5.0
    resolver: Resolver = field(default=system_resolver, compare=False)

    @classmethod
    def parse(cls, raw: str) -> CallbackPolicy:
        """`CALLBACK_ALLOWED_NETWORKS`: comma-separated CIDRs, addresses or host names."""
        networks, hosts = [], set()
        for item in filter(None, (part.strip() for part in raw.split(","))):
            try:
                networks.append(ipaddress.ip_network(item, strict=False))
            except ValueError:
                hosts.add(_host_name(item))
        return cls(tuple(networks), frozenset(hosts))

    def admit(self, target: CallbackTarget) -> tuple[IPAddress, ...]:
        """The addresses a callback to `target` may connect to (all of them checked);
        raise CallbackRefused when it resolves to none, too late, or to one refused."""
        admitted = self.admit_all([target])[target]
        if isinstance(admitted, CallbackRefused):
            raise admitted
        return admitted

    def admit_all(
        self, targets: Iterable[CallbackTarget]
    ) -> dict[CallbackTarget, tuple[IPAddress, ...] | CallbackRefused]:
        """`admit` for many targets at once, each one's addresses or why it is refused.
        Each distinct host is resolved once, all at the same time, within one deadline."""
        targets = list(dict.fromkeys(targets))
        lookups = {t.host: _Lookup(self.resolver, t.host, t.port) for t in targets if t.ip_literal is None}
        for lookup in lookups.values():
            lookup.start()
        deadline = _Deadline(self.resolve_timeout_s)
        admitted: dict[CallbackTarget, tuple[IPAddress, ...] | CallbackRefused] = {}
        for target in targets:
            try:
                literal = target.ip_literal
                addresses = (literal,) if literal is not None else lookups[target.host].result(deadline.left())
                if target.host not in self.allowed_hosts and not all(map(self._allowed, addresses)):
                    raise CallbackRefused("callback_url's host resolves to an internal address")
            except CallbackRefused as refused:
                admitted[target] = refused
            else:
                admitted[target] = addresses
        return admitted

    def _allowed(self, address: IPAddress) -> bool:
        plain = address.ipv4_mapped if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped else address
        return is_public(address) or any(plain in network for network in self.allowed_networks)


class _Deadline:
    def __init__(self, seconds: float) -> None:
        self._at = time.monotonic() + seconds

    def left(self) -> float:
        return max(0.0, self._at - time.monotonic())


class _Lookup:
    """One resolution on a thread of its own, so that a name server that never answers
    holds no caller past its deadline. The thread ends when the system resolver gives up
    (its own timeouts and attempts, resolv.conf); nothing waits for it."""

    def __init__(self, resolver: Resolver, host: str, port: int) -> None:
        self._resolver, self._host, self._port = resolver, host, port
        self._done = threading.Event()
        self._addresses: tuple[IPAddress, ...] = ()
        self._thread = threading.Thread(target=self._run, name=f"resolve {host}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        try:
            # A scope (`fe80::1%eth0`) is dropped: the address alone decides, and is refused.
            found = {ipaddress.ip_address(text.split("%")[0]) for text in self._resolver(self._host, self._port)}
            self._addresses = tuple(sorted(found, key=lambda a: (a.version, int(a))))
        except (OSError, UnicodeError, ValueError):
            pass
        finally:
            self._done.set()

    def result(self, timeout_s: float) -> tuple[IPAddress, ...]:
        if not self._done.wait(timeout_s):
            raise CallbackRefused("callback_url's host did not resolve in time")
        if not self._addresses:
            raise CallbackRefused("callback_url's host does not resolve")
        return self._addresses
