"""What keeps rq-dashboard 0.9 safe to open: client data never reaches its pages as
markup, its pages run only their own scripts, and its actions come only from its pages.

rq-dashboard fills its pages in the browser: underscore templates whose `<%= %>` inserts
the JSON of its data endpoints (job description, result, meta, exception text, worker
names) raw, with `innerHTML`. So every string in those JSON answers is HTML-escaped here,
on the server: whatever the dashboard's JavaScript does with them, a browser never gets
markup from client data (an upgrade that adds a new sink is covered too).

A few template lines are patched as they are loaded (`PATCHES`): its one inline script gets
the per-request CSP nonce; a queue name from the URL is put into a JavaScript string with
`tojson` (the `.js` includes are not autoescaped: it was a reflected XSS); and the three
spots that escaped for themselves stop doing so, since the data now comes escaped. A patch
that no longer matches stops the page with an error instead of serving it unpatched.
"""

from __future__ import annotations

import html
import json
import secrets
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from flask import Response, g, request
from jinja2 import BaseLoader, Environment
from webargs.flaskparser import abort  # what flask_smorest.abort is, with its NoReturn type

# template name -> (text as shipped in rq-dashboard 0.9.0, replacement), each found exactly once.
PATCHES: dict[str, tuple[tuple[str, str], ...]] = {
    "rq_dashboard/base.html": (
        ('<script type="text/javascript">', '<script type="text/javascript" nonce="{{ g.csp_nonce }}">'),
    ),
    "rq_dashboard/scripts/jobs.js": (("$(this).val('{{ queue.name }}');", "$(this).val({{ queue.name|tojson }});"),),
    "rq_dashboard/jobs.html": (
        ("<%= $('<div/>').text(d.description).html() %>", "<%= d.description %>"),
        ("<%= $('<div/>').text(d.exc_info).html() %>", "<%= d.exc_info %>"),
    ),
    "rq_dashboard/workers.html": (("<%- d.current_job.description %>", "<%= d.current_job.description %>"),),
}

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class TemplatePatchError(RuntimeError):
    """rq-dashboard's templates changed: a patch no longer applies. Check the new templates."""


class PatchedDashboardTemplates(BaseLoader):
    """Wraps the app's template loader and applies `PATCHES` to rq-dashboard's templates."""

    def __init__(self, inner: BaseLoader):
        self.inner = inner

    def get_source(self, environment: Environment, template: str) -> tuple[str, str | None, Callable[[], bool] | None]:
        source, filename, uptodate = self.inner.get_source(environment, template)
        for old, new in PATCHES.get(template, ()):
            if source.count(old) != 1:
                raise TemplatePatchError(f"{template}: expected {old!r} once, found it {source.count(old)} times")
            source = source.replace(old, new)
        return source, filename, uptodate

    def list_templates(self) -> list[str]:
        return self.inner.list_templates()


def escape_strings(value: Any) -> Any:
    """Every string (keys too) in a JSON document, HTML-escaped; numbers and the rest as they are."""
    if isinstance(value, str):
        return html.escape(value, quote=True)
    if isinstance(value, list):
        return [escape_strings(item) for item in value]
    if isinstance(value, dict):
        return {escape_strings(key): escape_strings(item) for key, item in value.items()}
    return value


def escape_json_answer(response: Response) -> Response:
    if response.is_json and response.status_code == 200:
        response.set_data(json.dumps(escape_strings(response.get_json())))
    return response


def issue_csp_nonce() -> None:
    g.csp_nonce = secrets.token_urlsafe(16)


def refuse_cross_site_actions() -> None:
    """State changes only by POST, and only from the dashboard's own pages.

    Browsers resend basic-auth credentials with a cross-site form or fetch, so the
    credentials alone prove nothing. `Sec-Fetch-Site` (sent by current browsers, not
    settable by a page) must say `same-origin`; a browser that does not send it (plain
    HTTP to a host that is not localhost) sends `Origin` on every POST, which must name
    this host. A request with neither is refused: no browser sends such a POST, and a
    script can send the header."""
    rule = request.url_rule
    if request.method != "POST" and rule is not None and "POST" in (rule.methods or ()):
        # An action route that also answers GET (rq-dashboard's requeue-all): never on GET.
        abort(405, message="dashboard actions take POST", headers={"Allow": "POST"})
    if request.method in SAFE_METHODS:
        return
    site = request.headers.get("Sec-Fetch-Site")
    origin = request.headers.get("Origin")
    if site is not None:
        same_origin = site == "same-origin"
    else:
        same_origin = bool(origin) and urlsplit(origin).netloc == request.host
    if not same_origin:
        abort(403, message="dashboard actions are accepted only from the dashboard's own pages")


def content_security_policy(nonce: str | None) -> str:
    # No 'unsafe-inline': injected markup (an onerror attribute, a <script>) never runs; the
    # page's own inline script carries the nonce. 'unsafe-eval' because rq-dashboard's
    # underscore templates compile with `new Function` (without it the pages stay empty);
    # they compile only the server's own <script type="text/template"> blocks.
    scripts = f"'self' 'nonce-{nonce}' 'unsafe-eval'" if nonce else "'self' 'unsafe-eval'"
    return "; ".join(
        (
            "default-src 'none'",
            f"script-src {scripts}",
            # rq-dashboard's templates use a few style attributes (the requeue button is
            # hidden with one until a job is known to have failed); styles cannot run script.
            "style-src 'self' 'unsafe-inline'",
            "img-src 'self' data:",  # Bootstrap's form controls draw with data: SVGs
            "font-src 'self'",
            "connect-src 'self'",
            "base-uri 'none'",
            "form-action 'self'",
            "frame-ancestors 'none'",
        )
    )


def add_security_headers(response: Response) -> Response:
    response.headers["Content-Security-Policy"] = content_security_policy(g.get("csp_nonce"))
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["X-Content-Type-Options"] = "nosniff"  # the JSON endpoints are no script
    response.headers["Referrer-Policy"] = "no-referrer"
    return response
