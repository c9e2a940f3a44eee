"""The API. `python wsgi.py` serves it as the product ships it (granian: service/api/serve.py);
`app` is the WSGI app for any WSGI server (`granian --interface wsgi wsgi:app`, gunicorn...)."""

import sys

if __name__ == "__main__":
    from service.api.serve import main

    main()
else:
    from service.api.events import STOPPING
    from service.api.serve import end_streams_on_stop
    from service.app import create_app
    from service.bug_reports import setup_bug_reports
    from service.config import SettingsError, load_settings
    from service.tracing import setup_tracing

    try:
        settings = load_settings(require_api_keys=True)
        # In each server process (this module is imported in each): the SDKs' export
        # threads would not survive a fork.
        setup_tracing("api", settings)
        setup_bug_reports("api", settings.sentry_dsn)
        app = create_app(settings)
    except SettingsError as exc:
        # One clear line instead of a traceback (`python wsgi.py` checks the settings before
        # starting any process; this covers the app run by another server).
        print(f"config error: {exc}", file=sys.stderr, flush=True)
        sys.exit(4)
    end_streams_on_stop(STOPPING)
