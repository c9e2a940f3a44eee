"""gunicorn settings for `gunicorn wsgi:app` (read from the working directory)."""

import os

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
