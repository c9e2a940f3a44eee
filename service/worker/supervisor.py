"""`WORKER_PROCESSES` worker processes under one parent, which replaces any that dies.

The parent never touches Redis; each child is a whole worker (`python worker.py` with
one process). SIGTERM/SIGINT are passed on to the children, which drain and exit; a
second signal is passed on too, and hurries them.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time

log = logging.getLogger(__name__)

RESPAWN_DELAY_S = 1.0


def supervise(argv: list[str], processes: int) -> int:
    env = {**os.environ, "WORKER_PROCESSES": "1"}
    command = [sys.executable, *argv]
    children = [subprocess.Popen(command, env=env) for _ in range(processes)]
    stopping = False

    def forward(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        for child in children:
            if child.poll() is None:
                child.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    while True:
        for i, child in enumerate(children):
            if child.poll() is not None and not stopping:
                log.warning("worker process %d exited with %s; starting another", child.pid, child.returncode)
                time.sleep(RESPAWN_DELAY_S)
                children[i] = subprocess.Popen(command, env=env)
        if stopping and all(child.poll() is not None for child in children):
            return 0
        time.sleep(0.2)
