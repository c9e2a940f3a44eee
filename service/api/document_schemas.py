"""The options of `POST /v1/documents` (the job resource's document parts are in `schemas`)."""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from service.api.schemas import (
    DEFAULT_MAX_TOKENS,
    MODEL_NAME,
    JobRequestSchema,
    callback_url_field,
    metadata_field,
    tier_field,
)
from service.documents.analyses import BUILT_IN, DEFAULT_ANALYSES, JSON, TEXT
from service.jobs.storage.queues import PRIORITIES

MAX_ANALYSES = 20
ANALYSIS_NAME = validate.Regexp(r"^[a-z][a-z0-9_]{0,39}$", error="lower-case letters, digits and _, at most 40")


class CustomAnalysisSchema(Schema):
    name = fields.String(required=True, validate=ANALYSIS_NAME)
    prompt = fields.String(required=True, validate=validate.Length(min=1, max=8000))
    output = fields.String(load_default=TEXT, validate=validate.OneOf([TEXT, JSON]))


CUSTOM_ANALYSIS_OPENAPI = {
    "type": "object",
    "required": ["name", "prompt"],
    "properties": {
        "name": {"type": "string", "pattern": ANALYSIS_NAME.regex.pattern},
        "prompt": {"type": "string", "minLength": 1, "maxLength": 8000},
        "output": {"type": "string", "enum": [TEXT, JSON], "default": TEXT},
    },
    "additionalProperties": False,
}


class AnalysisItem(fields.Field):
    """A built-in analysis by name, or `{"name", "prompt", "output"}`; stored as a dict."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        if isinstance(value, str):
            if value not in BUILT_IN:
                raise ValidationError(f"unknown analysis {value!r} (built-in: {', '.join(BUILT_IN)})")
            return {"name": value}
        if isinstance(value, dict):
            return CustomAnalysisSchema().load(value)
        raise ValidationError("a built-in analysis name, or an object with name, prompt and output")


class DocumentOptionsSchema(Schema):
    resolves_callback = True

    analyses = fields.List(
        AnalysisItem(metadata={"oneOf": [{"type": "string", "enum": list(BUILT_IN)}, CUSTOM_ANALYSIS_OPENAPI]}),
        load_default=lambda: [{"name": name} for name in DEFAULT_ANALYSES],
        validate=validate.Length(min=1, max=MAX_ANALYSES),
        metadata={"description": f"Default: {', '.join(DEFAULT_ANALYSES)}. An item is a built-in name or "
                  '`{"name", "prompt", "output": "text"|"json"}`.'},
    )  # fmt: skip
    model = fields.String(validate=MODEL_NAME, metadata={"description": "Defaults to LLM_DEFAULT_MODEL."})
    max_tokens = fields.Integer(
        strict=True, load_default=DEFAULT_MAX_TOKENS, metadata={"description": "Per call of a step."}
    )
    priority = fields.String(load_default="default", validate=validate.OneOf(PRIORITIES))
    tier = tier_field()
    metadata = metadata_field("Echoed back; bounded like a job's metadata.")
    timeout_s = fields.Integer(strict=True, metadata={"description": "Deadline for the whole job (every step)."})
    callback_url = callback_url_field("Gets the job, signed, when it ends; checked like a job's callback_url.")
    extraction = fields.String(
        load_default="text",
        validate=validate.OneOf(["text", "native"]),
        metadata={"description": "`text`: extracted here; `native`: a PDF is given to the model as a document "
                  "block (it reads layout, tables and scans). Other formats are always extracted."},
    )  # fmt: skip

    @validates_schema
    def check_names(self, data: dict[str, Any], **_: Any) -> None:
        names = [item["name"] for item in data.get("analyses", [])]
        if len(set(names)) != len(names):
            raise ValidationError("each analysis needs a name of its own", "analyses")

    # The same bounds as a job request's (max_tokens, metadata, timeout_s, callback_url).
    check_limits = JobRequestSchema.check_limits


class UploadSchema(Schema):
    filename = fields.String(required=True, validate=validate.Length(min=1, max=255))
    media_type = fields.String(
        validate=validate.Length(max=255), metadata={"description": "Informative: the content decides."}
    )
    data = fields.String(required=True, metadata={"description": "The file, base64.", "format": "byte"})


class DocumentJsonSchema(DocumentOptionsSchema):
    document = fields.Nested(UploadSchema, required=True)
