"""WSGI entry point: `gunicorn wsgi:app`."""

import sys

from service.app import create_app
from service.bug_reports import setup_bug_reports
from service.config import SettingsError, load_settings
from service.tracing import setup_tracing

try:
    settings = load_settings(require_api_keys=True)
    # In each gunicorn worker process (this module is imported after the fork): the SDKs'
    # export threads would not survive a fork.
    setup_tracing("api", settings.otlp_endpoint)
    setup_bug_reports("api", settings.sentry_dsn)
    app = create_app(settings)
except SettingsError as exc:
    # One clear line instead of a traceback. Status 4 is gunicorn's "app failed to load":
    # its master stops instead of booting the worker again and again (gunicorn.conf.py
    # checks the settings before forking; this covers gunicorn run with another config).
    print(f"config error: {exc}", file=sys.stderr, flush=True)
    sys.exit(4)
