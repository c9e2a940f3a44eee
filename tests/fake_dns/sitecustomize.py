"""Test-only name server: Python imports this at start-up in a process started with this
directory on PYTHONPATH (see `fake_dns_env` in tests/test_callback_addresses.py).

`FAKE_DNS="name=a1|a2;other=a3"`: the n-th lookup of `name` in this process answers the
n-th address (the last one repeats), as a name server whose answer changes would (DNS
rebinding); `hang` never answers. A name is matched as `socket.getaddrinfo` itself
encodes it (Python's IDNA 2003 codec for a non-ASCII str). Other names go to the system.
"""

from __future__ import annotations

import os
import socket
import threading

_system_getaddrinfo = socket.getaddrinfo
_answers = {
    name: answers.split("|")
    for name, _, answers in (item.partition("=") for item in os.environ.get("FAKE_DNS", "").split(";") if item)
}
_lookups: dict[str, int] = {}
_lock = threading.Lock()


def _getaddrinfo(host, port, family=0, type=0, proto=0, flags=0):
    name = host.decode() if isinstance(host, bytes) else host
    if isinstance(name, str) and not name.isascii():
        name = name.encode("idna").decode("ascii")
    if name not in _answers:
        return _system_getaddrinfo(host, port, family, type, proto, flags)
    with _lock:
        _lookups[name] = count = _lookups.get(name, 0) + 1
    answers = _answers[name]
    address = answers[min(count, len(answers)) - 1]
    if address == "hang":
        threading.Event().wait()
    port_number = int(port or 0)
    if ":" in address:
        return [(socket.AF_INET6, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (address, port_number, 0, 0))]
    return [(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (address, port_number))]


if _answers:
    socket.getaddrinfo = _getaddrinfo
