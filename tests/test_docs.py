"""/docs: Swagger UI from the pinned flask-swagger-ui package, served by the API itself;
the page loads nothing from another origin, so it works without internet access."""

from __future__ import annotations

import re
from urllib.parse import urlsplit


def test_docs_load_only_same_origin_files_and_they_answer(client):
    page = client.get("/docs")
    assert page.status_code == 200
    text = page.get_data(as_text=True)

    urls = re.findall(r'<(?:script|link)\b[^>]*\b(?:src|href)="([^"]+)"', text)
    assert any(url.endswith("swagger-ui-bundle.js") for url in urls), urls
    for url in urls:
        parts = urlsplit(url)
        assert not parts.scheme and not parts.netloc and url.startswith("/"), url
        answer = client.get(url)
        assert answer.status_code == 200, url
        assert answer.content_type.startswith(("text/javascript", "application/javascript", "text/css")), url
    assert "/openapi.json" in text and client.get("/openapi.json").status_code == 200
