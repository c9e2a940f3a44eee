"""The Python client's console script, `llmjobs`, run as a user would."""

from __future__ import annotations

import os
import subprocess

from tests.support.keys import ALICE_KEY
from tests.support.paths import BIN, ROOT

LLMJOBS = str(BIN / "llmjobs")  # the console script the package installs


def run_cli(*args: str, url: str | None = None, key: str | None = ALICE_KEY, timeout: float = 60, **popen):
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLMJOBS_")}
    if url is not None:
        env["LLMJOBS_URL"] = url
    if key is not None:
        env["LLMJOBS_API_KEY"] = key
    return subprocess.run(
        [LLMJOBS, *args], cwd=ROOT, env=env, capture_output="stdout" not in popen, text=True, timeout=timeout, **popen
    )
