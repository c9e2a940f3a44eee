"""Parse a `Retry-After` header: seconds, or an HTTP date."""

from __future__ import annotations

import email.utils
import math
import time

# Longer is read as this: a wait past a day is no wait a caller can schedule usefully, and
# an unbounded one (`1e400` is infinity) breaks the arithmetic of whoever schedules it.
MAX_RETRY_AFTER_S = 24 * 3600.0


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait, 0..MAX_RETRY_AFTER_S, or None when absent or unreadable."""
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = email.utils.parsedate_to_datetime(value).timestamp() - time.time()
        except (ValueError, TypeError, OverflowError):
            return None
    if math.isnan(seconds):
        return None
    return min(max(0.0, seconds), MAX_RETRY_AFTER_S)
