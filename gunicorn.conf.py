"""gunicorn settings for `gunicorn wsgi:app` (read from the working directory)."""

import os
import signal
import sys

from service.config import SettingsError, load_settings

bind = os.environ.get("BIND", "127.0.0.1:8000")  # honcho sets PORT for every process, so not PORT
# Threaded workers: requests mostly wait on Redis, and later SSE streams stay open.
worker_class = "gthread"
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
# Each open SSE stream holds a thread; SSE_MAX_STREAMS (24) per process keeps 8 free.
threads = int(os.environ.get("GUNICORN_THREADS", "32"))
timeout = 60
accesslog = "-"  # request lines only: headers (and so API keys) are never logged
# JSON lines like every other process (service/logs.py).
logconfig_dict = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"json": {"()": "service.logs.json_formatter", "process": "api"}},
    "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "json"}},
    "root": {"level": "INFO", "handlers": ["stderr"]},
    "loggers": {
        "gunicorn.error": {"level": "INFO", "handlers": ["stderr"], "propagate": False},
        "gunicorn.access": {"level": "INFO", "handlers": ["stderr"], "propagate": False},
    },
}
wsgi_app = "wsgi:app"
# gunicorn answers a request past these itself, with an HTML page. The app's own bounds
# (service/api/request_limits.py) are lower, so that most too-long requests get JSON.
limit_request_line = 8190  # gunicorn's maximum; 0 would mean no bound at all
limit_request_fields = 100
limit_request_field_size = 16384


def on_starting(server) -> None:
    """Validate the settings in the master, before any worker forks. A worker that fails at
    import is booted again and again; here a bad value stops gunicorn, naming the variable."""
    try:
        load_settings(require_api_keys=True)
    except SettingsError as exc:
        print(f"config error: {exc}", file=sys.stderr, flush=True)
        sys.exit(2)


def post_worker_init(worker) -> None:
    """On SIGTERM, end this process's event streams before gunicorn's graceful stop: an open
    stream would hold it until its client left or its time limit passed. Each client
    resumes on another process with Last-Event-ID."""
    from service.api.events import STOPPING

    graceful_stop = signal.getsignal(signal.SIGTERM)

    def stop(signum, frame) -> None:
        STOPPING.set()
        graceful_stop(signum, frame)

    signal.signal(signal.SIGTERM, stop)
