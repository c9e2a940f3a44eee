"""The two clients every test's service knows (`API_KEYS`), and their request headers."""

from __future__ import annotations

ALICE_KEY = "alice-key-0123456789abcdef"
BOB_KEY = "bob-key-0123456789abcdef"
API_KEYS = f"alice={ALICE_KEY},bob={BOB_KEY}"
ALICE = {"Authorization": f"Bearer {ALICE_KEY}"}
BOB = {"Authorization": f"Bearer {BOB_KEY}"}
