"""What the OpenAPI document says beyond what the marshmallow fields carry: the bounds
this deployment configured (service.config.JobLimits), the rule between two fields, and
whether webhooks are on, so that a request valid by the document is one the API accepts."""

from __future__ import annotations

from typing import Any

from apispec import APISpec

from service.config import Settings

# Component names flask-smorest gives the request schemas (the class name without "Schema").
JOB_REQUEST, BATCH_JOB_REQUEST, BATCH_REQUEST = "JobRequest", "BatchJobRequest", "BatchRequest"
DOCUMENT_JSON = "DocumentJson"  # POST /v1/documents with a JSON body


def document_request_rules(spec: APISpec, settings: Settings) -> None:
    """Call once the blueprints are registered (their schemas are components by then)."""
    limits = settings.limits
    schemas: dict[str, dict[str, Any]] = spec.components.schemas
    jobs = [schemas[JOB_REQUEST], schemas[BATCH_JOB_REQUEST]]  # alone, and inside a batch
    for job in jobs:
        job["oneOf"] = [{"required": ["prompt"]}, {"required": ["messages"]}]  # exactly one of them
        job["properties"]["max_tokens"].update(minimum=1, maximum=limits.max_output_tokens)
        job["properties"]["timeout_s"].update(minimum=1, maximum=limits.max_timeout_s)
        job["properties"]["messages"]["maxItems"] = limits.max_messages
        job["properties"]["metadata"]["maxProperties"] = limits.max_metadata_keys
    document = schemas[DOCUMENT_JSON]
    document["properties"]["max_tokens"].update(minimum=1, maximum=limits.max_output_tokens)
    document["properties"]["timeout_s"].update(minimum=1, maximum=limits.max_timeout_s)
    document["properties"]["metadata"]["maxProperties"] = limits.max_metadata_keys
    batch = schemas[BATCH_REQUEST]
    batch["properties"]["jobs"]["maxItems"] = settings.max_batch_jobs
    batch["properties"]["metadata"]["maxProperties"] = limits.max_metadata_keys
    if settings.webhook_secret is None:  # webhooks off: any callback_url is refused, so none is offered
        for request in (*jobs, batch, document):
            del request["properties"]["callback_url"]
