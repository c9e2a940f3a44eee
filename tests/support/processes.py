"""Real processes in a test: started with their output in files and stopped at teardown
(`Processes`, the `processes` fixture), or killed with all their children as a crash would."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from pathlib import Path

from tests.support.paths import ROOT


def process_tree(pid: int) -> list[int]:
    """`pid` and every descendant of it, read from /proc (`pid` first)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # exited meanwhile
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo.extend(children.get(current, []))
    return tree


def kill_tree(pid: int) -> list[int]:
    """SIGKILL a process and every descendant, as a crashed machine would. The tree is read
    before any kill: RQ puts each job's work horse in its own process group, so killing
    the worker's group alone leaves the horses running their calls."""
    tree = process_tree(pid)
    for member in tree:
        with contextlib.suppress(ProcessLookupError):
            os.kill(member, signal.SIGKILL)
    return tree


ACCESS_LOG = '"logger": "granian.access"'


class Processes:
    """Starts real processes with their output in files, and stops them all at teardown."""

    def __init__(self, log_dir: Path):
        self.log_dir = log_dir
        self.started: list[tuple[str, subprocess.Popen, Path]] = []

    def start(self, name: str, args: list[str], env: dict[str, str]) -> subprocess.Popen:
        log = self.log_dir / f"{name}-{len(self.started)}.log"
        process = subprocess.Popen(
            args, cwd=ROOT, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True
        )
        self.started.append((name, process, log))
        return process

    def log_of(self, process: subprocess.Popen) -> str:
        return next(log.read_text(errors="replace") for _, p, log in self.started if p is process)

    def stop_all(self) -> None:
        for _, process, _ in self.started:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for _, process, _ in self.started:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()

    def tails(self, lines: int = 30) -> str:
        """Each process's last lines, without the access log: a test that polls /metrics
        would fill them with its requests."""
        parts = []
        for name, process, log in self.started:
            kept = [line for line in log.read_text(errors="replace").splitlines() if ACCESS_LOG not in line]
            parts.append(f"--- {name} (pid {process.pid}, rc {process.poll()})\n" + "\n".join(kept[-lines:]))
        return "\n".join(parts)
