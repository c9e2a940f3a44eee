"""The prompt cache: a request whose prefix up to a `cache_control` breakpoint was written
before (and has not expired) reads it; what lies between the cache hit and the last
breakpoint is written, each part with the lifetime of the breakpoint that ends it.
The usage fields come out as the real API reports them."""

from __future__ import annotations

import hashlib
import threading
import time
from typing import Any

from .content import Prompt

TTL_S = {"5m": 300.0, "1h": 3600.0}
MAX_ENTRIES = 10_000


class PromptCache:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._expires: dict[str, float] = {}  # prefix hash -> expiry (epoch s)

    def account(self, prompt: Prompt, now: float | None = None) -> dict[str, Any]:
        """The input usage of a request: `input_tokens` (what was neither read nor written),
        `cache_read_input_tokens`, `cache_creation_input_tokens` and its split by lifetime."""
        now = time.time() if now is None else now
        hashes, ends, digest, chars = [], [], hashlib.sha256(), 0
        for segment in prompt.segments:
            digest.update(segment.material.encode())
            hashes.append(digest.hexdigest())
            chars += segment.chars
            ends.append(chars)
        breakpoints = [i for i, segment in enumerate(prompt.segments) if segment.ttl]
        if not breakpoints:
            return {"input_tokens": max(1, chars // 4)}
        with self._lock:
            hit = max((i for i in range(len(hashes)) if self._expires.get(hashes[i], 0) > now), default=-1)
            read_chars = ends[hit] if hit >= 0 else 0
            written = {"5m": 0, "1h": 0}
            start = read_chars
            for i in breakpoints:
                ttl = prompt.segments[i].ttl
                assert ttl is not None
                if i > hit:
                    written[ttl] += ends[i] - start
                    start = ends[i]
                self._expires[hashes[i]] = max(self._expires.get(hashes[i], 0), now + TTL_S[ttl])  # a hit refreshes
            if len(self._expires) > MAX_ENTRIES:
                self._expires = {key: until for key, until in self._expires.items() if until > now}
        five, hour = written["5m"] // 4, written["1h"] // 4
        return {
            "input_tokens": max(1, (chars - read_chars - written["5m"] - written["1h"]) // 4),
            "cache_creation_input_tokens": five + hour,
            "cache_read_input_tokens": read_chars // 4,
            "cache_creation": {"ephemeral_5m_input_tokens": five, "ephemeral_1h_input_tokens": hour},
        }
