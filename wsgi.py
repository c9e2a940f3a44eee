"""WSGI entry point: `gunicorn wsgi:app`."""

import sys

from service.app import create_app
from service.config import SettingsError

try:
    app = create_app()
except SettingsError as exc:
    # One clear line instead of a traceback. Status 4 is gunicorn's "app failed to load":
    # its master stops instead of booting the worker again and again (gunicorn.conf.py
    # checks the settings before forking; this covers gunicorn run with another config).
    print(f"config error: {exc}", file=sys.stderr, flush=True)
    sys.exit(4)
