"""The API's server as the product ships it: `python wsgi.py` runs granian (a Rust HTTP
server) with `WEB_CONCURRENCY` processes of `API_THREADS` threads each.

Chosen over gunicorn's gthread worker by measurement (bench/RESULTS.md, issue 28): gunicorn
parses HTTP and hands each request between threads in Python, which cost more of a submit's
CPU than the app itself; granian does both in Rust and calls the app in its threads.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
import threading

from service.config import SettingsError, load_settings

# The server's own settings (the app's are in service/config.py) and their defaults.
# API_THREADS: each open SSE stream holds a thread; SSE_MAX_STREAMS (24) per process keeps 8 free.
# ACCESS_LOG: the share of successful requests that get a JSON line (every error gets one):
# 1 for all, 0 for none (behind a proxy that logs them), 0.01 for a hundredth of the log
# volume. A line costs ~7 % of a submit's API CPU, half of it before the share is drawn
# (granian builds the record first): 0.1 saves ~3 % (bench/RESULTS.md).
SERVER_SETTINGS = {"BIND": "127.0.0.1:8000", "WEB_CONCURRENCY": "2", "API_THREADS": "32", "ACCESS_LOG": "1"}
# A process that has not stopped this long after SIGTERM is killed: its streams end within a
# second of the signal (end_streams_on_stop), so only a stuck request is still running.
STOP_GRACE_S = 30
ACCESS_FORMAT = '%(addr)s "%(method)s %(path)s %(protocol)s" %(status)d %(dt_ms).1fms'


def main() -> None:
    """Check the settings once, before any process starts (a bad value stops the server
    naming the variable, instead of every process failing alike), then serve."""
    from granian.constants import Interfaces
    from granian.server import Server

    try:
        load_settings(require_api_keys=True)
        host, port = _bind(_server_setting("BIND"))
        workers = _positive("WEB_CONCURRENCY")
        threads = _positive("API_THREADS")
        access_share = _share("ACCESS_LOG")
    except SettingsError as exc:
        print(f"config error: {exc}", file=sys.stderr, flush=True)
        sys.exit(2)
    Server(
        "wsgi:app",
        address=host,
        port=port,
        interface=Interfaces.WSGI,
        workers=workers,
        blocking_threads=threads,
        log_dictconfig=_log_config(access_share),
        # request lines only: headers (and so API keys) are never logged
        log_access=access_share > 0,
        log_access_format=ACCESS_FORMAT,
        respawn_failed_workers=True,
        workers_kill_timeout=STOP_GRACE_S,
    ).serve()


def end_streams_on_stop(stopping: threading.Event) -> None:
    """Set `stopping` when this process gets SIGTERM or SIGINT, whichever server installed
    the signal's handler: Python writes every caught signal's number to the wakeup fd, and
    a thread here reads it. (The server's own handler then stops it gracefully; an open
    event stream would hold it until its time limit, so the streams end first.) Call from
    the main thread, once per process."""
    reader, writer = socket.socketpair()
    writer.setblocking(False)
    signal.set_wakeup_fd(writer.fileno(), warn_on_full_buffer=False)
    stop_signals = {signal.SIGTERM, signal.SIGINT}

    def watch() -> None:
        # Reads to the end of the process: a closed reader would make every later signal's
        # write fail (Python prints that failure on stderr).
        while data := reader.recv(64):
            if stop_signals & set(data):
                stopping.set()

    threading.Thread(target=watch, name="stop-watch", daemon=True).start()
    _KEPT.extend((reader, writer))  # both open for the life of the process


_KEPT: list[socket.socket] = []


def _server_setting(name: str) -> str:
    return os.environ.get(name, SERVER_SETTINGS[name])


def _bind(value: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    if not host or not port.isdigit():
        raise SettingsError(f"BIND: {value!r} is not HOST:PORT")
    return host, int(port)


def _positive(name: str) -> int:
    raw = _server_setting(name)
    if not raw.isdigit() or int(raw) < 1:
        raise SettingsError(f"{name}: {raw!r} is not a positive integer")
    return int(raw)


def _share(name: str) -> float:
    raw = _server_setting(name)
    try:
        share = float(raw)
    except ValueError:
        share = -1.0
    if not 0 <= share <= 1:  # NaN too
        raise SettingsError(f"{name}: {raw!r} is not a share from 0 to 1")
    return share


def _log_config(access_share: float) -> dict[str, object]:
    """granian's own lines, its access lines (`access_share` of the successful ones) and the
    app's as JSON, like every other process's; a line the app writes in a request carries
    its trace's ids."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": "service.logs.json_formatter", "process": "api"}},
        "filters": {
            "context": {"()": "service.logs.ContextFilter"},
            "sampled": {"()": "service.logs.SampledAccessLines", "share": access_share},
        },
        "handlers": {"json": {"class": "logging.StreamHandler", "formatter": "json", "filters": ["context"]}},
        "root": {"level": "INFO", "handlers": ["json"]},
        "loggers": {
            "_granian": {"handlers": ["json"], "level": "INFO", "propagate": False},
            "granian.access": {"handlers": ["json"], "filters": ["sampled"], "level": "INFO", "propagate": False},
        },
    }
