"""WSGI entry point: `gunicorn wsgi:app`."""

import sys

from service.app import create_app
from service.config import SettingsError

try:
    app = create_app()
except SettingsError as exc:
    # One clear line instead of a traceback; gunicorn then stops booting.
    print(f"config error: {exc}", file=sys.stderr, flush=True)
    sys.exit(2)
