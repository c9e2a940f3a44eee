"""/v1/documents: upload a document for a multi-step analysis job (`kind: "document"`).

The upload comes as `multipart/form-data` (a `file` part; the options as form fields or
one JSON `options` part) or as JSON (`document: {filename, media_type, data}`, base64).
It is recognised by its content (415 for anything but PDF, DOCX, HTML, Markdown, text),
bounded by MAX_DOCUMENT_BYTES (413), and stored in Redis with the job, in the same
round trip; a worker extracts its text. An `Idempotency-Key` works as on `POST /v1/jobs`:
the same key with the same file and options returns the first job (200), with another
body it is a 409.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from dataclasses import replace
from typing import Any

from flask import request
from flask.views import MethodView
from marshmallow import Schema, ValidationError
from redis.client import Pipeline
from webargs.flaskparser import abort  # what flask_smorest.abort is, with its NoReturn type

from service.api.auth import require_client
from service.api.budgets import reservation_for
from service.api.context import app_context
from service.api.document_schemas import DocumentJsonSchema, DocumentOptionsSchema
from service.api.jobs import default_timeout_s, idempotency_claim
from service.api.json_body import Blueprint, InvalidJsonBody, parse_json_body
from service.api.json_response import json_response
from service.api.limits import allowance_headers, limit_uploads, submit_gate
from service.api.replication import REPLICATED_503, replicated
from service.api.schemas import IdempotencyHeaderSchema, JobSchema
from service.documents import formats
from service.documents.steps import new_steps
from service.jobs.storage.admission import check_admissible
from service.jobs.storage.keys import upload_key
from service.jobs.storage.queues import DOCUMENT_TASK
from service.jobs.storage.resource import job_resource
from service.jobs.storage.submit import NewJob, submit_job

blp = Blueprint("documents", __name__, url_prefix="/v1/documents", description="Analyse documents.")
blp.before_request(require_client)
LOCATION = {"Location": {"description": "The job's URL", "schema": {"type": "string"}}}
ENVELOPE_BYTES = 256 * 1024  # multipart headers, options, JSON around the base64
INTEGER_FIELDS = ("max_tokens", "timeout_s")
ASCII_INTEGER = re.compile(r"-?[0-9]{1,18}")  # str.isdigit() takes "²", which int() refuses
MAX_FILENAME_CHARS = 255  # as the JSON body's document.filename
# Built once: a schema's construction deep-copies its fields (see json_body.Blueprint.arguments).
OPTIONS_SCHEMA, JSON_SCHEMA = DocumentOptionsSchema(), DocumentJsonSchema()
MULTIPART_BODY = {
    "content": {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "required": ["file"],
                "properties": {
                    "file": {"type": "string", "format": "binary"},
                    "options": {
                        "type": "string",
                        "description": "The options (as in the JSON body, less `document`) as one JSON object. "
                        "They may also come as form fields of their own: `analyses` a JSON list or comma-separated "
                        "built-in names, `metadata` a JSON object, the others as their values.",
                    },
                },
            }
        },
        "application/json": {"schema": DocumentJsonSchema},
    }
}


@blp.before_request
def allow_document_sized_body() -> None:
    """The app's MAX_BODY_BYTES bounds JSON jobs; an upload may be MAX_DOCUMENT_BYTES (as
    base64, 4/3 of that) and its envelope. Past it, werkzeug answers 413 before reading it."""
    request.max_content_length = app_context().settings.max_document_bytes * 4 // 3 + ENVELOPE_BYTES


@blp.before_request
def refuse_before_reading() -> None:
    """A client over its submit limit gets its 429 before its upload is read and parsed."""
    check_admissible(app_context().redis, submit_gate(()))


@blp.route("")
class Documents(MethodView):
    @blp.doc(requestBody=MULTIPART_BODY)
    @blp.arguments(IdempotencyHeaderSchema, location="headers", as_kwargs=True)
    @blp.response(202, JobSchema, headers=LOCATION, description='Queued: the job, `kind: "document"`.')
    @blp.alt_response(200, schema=JobSchema, headers=LOCATION, description="The job an earlier request with the "
                      "same Idempotency-Key, file and options created.")  # fmt: skip
    @blp.alt_response(409, description="The Idempotency-Key was used with another file or other options.")
    @blp.alt_response(413, description="The file is larger than MAX_DOCUMENT_BYTES.")
    @blp.alt_response(415, description="Not a PDF, DOCX, HTML, Markdown or text file (told by its content).")
    @blp.alt_response(422, description="Bad options.")
    @blp.alt_response(429, description="Over your submit limit, UPLOAD_RATE_LIMIT, or your spend budget "
                      "(`errors.type` is `budget_exceeded`); see Retry-After.")  # fmt: skip
    @blp.alt_response(503, description=REPLICATED_503)
    @limit_uploads
    @replicated
    def post(self, idempotency_key: str | None = None):
        """Upload a document; its text is extracted and each analysis runs over it, step by step."""
        ctx = app_context()
        settings = ctx.settings
        filename, declared, data, options = _read_upload()
        if len(data) > settings.max_document_bytes:
            abort(
                413,
                message=f"the file is {len(data)} bytes; at most {settings.max_document_bytes} (MAX_DOCUMENT_BYTES)",
            )
        try:
            media_type = formats.sniff(data, filename, declared)
        except formats.UnsupportedDocument as exc:
            abort(415, message=f"unsupported document: {exc}")
        analyses = options["analyses"]
        new = NewJob(
            priority=options["priority"],
            request={
                "model": options.get("model", settings.default_model),
                "max_tokens": options["max_tokens"],
                "analyses": analyses,
                "extraction": options["extraction"],
            },
            metadata=options["metadata"],
            timeout_s=options.get("timeout_s", default_timeout_s(options["tier"], settings)),
            tier=options["tier"],
            callback_url=options.get("callback_url"),
            task=DOCUMENT_TASK,
            document={"filename": filename, "media_type": media_type, "bytes": len(data), "pages": None,
                      "characters": None},
            steps=new_steps([analysis["name"] for analysis in analyses]),
        )  # fmt: skip
        reservation = reservation_for(DOCUMENT_TASK, new.request, new.document, tier=new.tier)
        new = replace(new, reservation_micro_usd=reservation)

        def store_upload(pipe: Pipeline, job_id: str) -> None:
            # Deleted once the text is extracted; the TTL covers a job that never runs.
            pipe.set(upload_key(job_id), data, ex=settings.result_ttl_s)

        submitted = submit_job(
            ctx.redis, ctx.queues, new, gate=submit_gate([new.priority]), max_attempts=settings.max_attempts,
            result_ttl_s=settings.result_ttl_s, also=store_upload,
            idempotency=idempotency_claim(idempotency_key, _fingerprinted(filename, declared, data, options)),
        )  # fmt: skip
        resource = job_resource(submitted.job)
        headers = {"Location": resource["links"]["self"], **allowance_headers(submitted.allowance)}
        return json_response(resource, 202 if submitted.created else 200, headers)


def _fingerprinted(filename: str, declared: str | None, data: bytes, options: dict[str, Any]) -> dict[str, Any]:
    """What an Idempotency-Key is checked against: the validated options and the file (its
    name, declared type and digest), however it was sent (multipart or base64 JSON)."""
    return {"filename": filename, "media_type": declared, "sha256": hashlib.sha256(data).hexdigest(), **options}


def _read_upload() -> tuple[str, str | None, bytes, dict[str, Any]]:
    """(filename, declared media type, bytes, validated options) from either body."""
    if request.mimetype == "multipart/form-data":
        upload = request.files.get("file")
        if upload is None:
            abort(422, message="send the document as a `file` part", errors={"form": {"file": ["required"]}})
        options = _load(OPTIONS_SCHEMA, _form_options(), "form")
        filename = upload.filename or "upload"
        if len(filename) > MAX_FILENAME_CHARS:
            message = f"at most {MAX_FILENAME_CHARS} characters"
            abort(422, message=f"file: the file name is longer than {MAX_FILENAME_CHARS} characters",
                  errors={"form": {"file": [f"filename: {message}"]}})  # fmt: skip
        return filename, upload.mimetype or None, upload.read(), options
    if request.mimetype == "application/json":
        try:
            body = parse_json_body(request.get_data(cache=False))
        except InvalidJsonBody as exc:
            abort(400, message=str(exc), errors={"json": [str(exc)]})
        options = _load(JSON_SCHEMA, body, "json")
        document = options.pop("document")
        try:
            data = base64.b64decode(document["data"], validate=True)
        except (binascii.Error, ValueError):
            message = "not base64"
            abort(422, message=f"document.data: {message}", errors={"json": {"document": {"data": [message]}}})
        return document["filename"], document.get("media_type"), data, options
    abort(415, message="send multipart/form-data with a `file` part, or JSON with `document` (base64)")


def _form_options() -> dict[str, Any]:
    """The options of a multipart upload: one JSON `options` part, or form fields (a JSON
    list or comma-separated names for `analyses`, a JSON object for `metadata`)."""
    raw = request.form.get("options")
    if raw is None and (part := request.files.get("options")) is not None:
        raw = part.read().decode("utf-8", "replace")
    if raw is not None:
        try:
            return parse_json_body(raw.encode())
        except InvalidJsonBody as exc:
            abort(422, message=f"options: {exc}", errors={"form": {"options": [str(exc)]}})
    options: dict[str, Any] = {}
    for name, value in request.form.items():
        if name == "analyses" and not value.lstrip().startswith("["):
            options[name] = [item.strip() for item in value.split(",") if item.strip()]
        elif name in ("analyses", "metadata"):
            try:
                options[name] = parse_json_body(value.encode())
            except InvalidJsonBody as exc:
                abort(422, message=f"{name}: {exc}", errors={"form": {name: [str(exc)]}})
        elif name in INTEGER_FIELDS and ASCII_INTEGER.fullmatch(value.strip()):
            options[name] = int(value)
        else:
            options[name] = value
    return options


def _load(schema: Schema, data: Any, location: str) -> dict[str, Any]:
    try:
        loaded = schema.load(data)
    except ValidationError as exc:
        abort(422, errors={location: exc.messages})
    assert isinstance(loaded, dict)  # a schema of one object (not many=True) loads a dict
    return loaded
