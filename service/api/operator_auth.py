"""Operator login (HTTP basic auth with DASHBOARD_USERNAME / DASHBOARD_PASSWORD): the
dashboard always, `/metrics` when METRICS_OPERATOR_AUTH is on."""

from __future__ import annotations

import hmac

from flask import request
from webargs.flaskparser import abort  # what flask_smorest.abort is, with its NoReturn type

from service.api.limits import check_operator_login_allowance, count_wrong_operator_login
from service.config import Settings

REALM = 'Basic realm="llm-jobs operator"'


def require_operator(settings: Settings) -> None:
    """Abort with a JSON 401 (and `WWW-Authenticate: Basic`) unless the request carries the
    operator's basic-auth credentials. Settings guarantee both are set when this is used.
    Wrong passwords are counted per address: past OPERATOR_LOGIN_RATE_LIMIT, a 429."""
    check_operator_login_allowance(settings.operator_login_rate_limit)
    username = (settings.dashboard_username or "").encode()
    password = (settings.dashboard_password or "").encode()
    auth = request.authorization
    given_user = (auth.username or "").encode() if auth and auth.type == "basic" else b""
    given_password = (auth.password or "").encode() if auth and auth.type == "basic" else b""
    # Both compared, always: the time taken says nothing about which one was wrong.
    user_ok = hmac.compare_digest(given_user, username)
    password_ok = hmac.compare_digest(given_password, password)
    if not (user_ok and password_ok and username and password):
        if auth is not None:  # a browser's first request, without credentials, is no guess
            count_wrong_operator_login(settings.operator_login_rate_limit)
        abort(401, message="operator credentials required", headers={"WWW-Authenticate": REALM})
