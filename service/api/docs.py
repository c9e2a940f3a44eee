"""Swagger UI's files for `/docs`, served by the API itself from the pinned
flask-swagger-ui package (which ships swagger-ui's dist folder): the page works without
internet access and runs no third-party script on this origin."""

from __future__ import annotations

from pathlib import Path

import flask_swagger_ui
from flask import Blueprint

SWAGGER_UI_URL = "/docs/swagger-ui/"

blp = Blueprint(
    "swagger_ui_files",
    __name__,
    static_folder=Path(flask_swagger_ui.__file__).parent / "dist",
    static_url_path=SWAGGER_UI_URL.rstrip("/"),
)
