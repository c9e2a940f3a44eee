"""Redis replies at their real types, cast here and nowhere else.

redis-py types each command's reply for its sync and asyncio clients at once
(`Awaitable[T] | T`), and a Lua script's reply as `str`. The service reads them through sync
clients (the worker's few asyncio reads apart), over RESP2 without `decode_responses`: a
string is `bytes`, a Lua table a list, a Lua number an `int`. Each function says which reply
it is for; a caller passes the command's reply through the one that fits."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any, cast

# A stream entry as XRANGE/XREVRANGE answer it: (entry id, fields).
StreamEntry = tuple[bytes, dict[bytes, bytes]]


def awaited(reply: object) -> Awaitable[Any]:
    """An asyncio client's reply, to await, then to pass through the function that fits."""
    return cast("Awaitable[Any]", reply)


def as_bytes(reply: object) -> bytes | None:
    """GET, HGET: the value, None when there is none."""
    return cast("bytes | None", reply)


def as_int(reply: object) -> int:
    """An integer reply (ZCARD, ZREM, ...), or a Lua script's number."""
    return cast(int, reply)


def as_list(reply: object) -> list[Any]:
    """A Lua script's table: its items as the script made them (bytes, ints, nested tables)."""
    return cast("list[Any]", reply)


def as_members(reply: object) -> list[bytes]:
    """ZRANGE and its kin (by score, by lex, reversed), LRANGE: the members."""
    return cast("list[bytes]", reply)


def as_scored(reply: object) -> list[tuple[bytes, float]]:
    """ZRANGE ... WITHSCORES: (member, score) pairs."""
    return cast("list[tuple[bytes, float]]", reply)


def as_values(reply: object) -> list[bytes | None]:
    """MGET, HMGET: one value per key or field asked, None where there is none."""
    return cast("list[bytes | None]", reply)


def as_hash(reply: object) -> dict[bytes, bytes]:
    """HGETALL: the hash's fields and values ({} when it does not exist)."""
    return cast("dict[bytes, bytes]", reply)


def as_info(reply: object) -> dict[str, Any]:
    """INFO <section>, CONFIG GET: redis-py parses them into a dict."""
    return cast("dict[str, Any]", reply)


def as_stream_entries(reply: object) -> list[StreamEntry]:
    """XRANGE, XREVRANGE: the entries."""
    return cast("list[StreamEntry]", reply)


def as_stream_read(reply: object) -> list[tuple[bytes, list[StreamEntry]]]:
    """XREAD: per stream read, (stream key, its entries)."""
    return cast("list[tuple[bytes, list[StreamEntry]]]", reply)
