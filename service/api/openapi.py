"""What the OpenAPI document says beyond what the marshmallow fields carry: the bounds
this deployment configured (service.config.JobLimits), the rule between two fields, and
whether webhooks are on, so that a request valid by the document is one the API accepts."""

from __future__ import annotations

from typing import Any

from apispec import APISpec

from service.api.schemas import INSIDE_PARAMS, MODEL_NAME
from service.config import Settings
from service.llm.params import messages_schema, openapi_schema

# Component names flask-smorest gives the request schemas (the class name without "Schema").
JOB_REQUEST, BATCH_JOB_REQUEST, BATCH_REQUEST = "JobRequest", "BatchJobRequest", "BatchRequest"
DOCUMENT_JSON = "DocumentJson"  # POST /v1/documents with a JSON body
MESSAGES_REQUEST = "MessagesRequest"  # `params`, as the SDK types it


def params_document(spec: APISpec, settings: Settings) -> None:
    """`params` as the SDK types it, the `MessagesRequest` component (its definitions become
    `Messages*` components), with this deployment's bounds, `model` and `max_tokens` optional
    (defaulted), no `stream`."""
    params, definitions = openapi_schema(messages_schema(), prefix="Messages")
    for name, definition in definitions.items():
        spec.components.schema(name, definition)
    properties = params["properties"]
    del properties["stream"]
    properties["model"] = {"type": "string", "pattern": MODEL_NAME.regex.pattern}
    properties["max_tokens"].update(minimum=1, maximum=settings.limits.max_output_tokens)
    properties["messages"]["maxItems"] = settings.limits.max_messages
    properties["betas"] = {"type": "array", "items": {"type": "string"}, "description": "The beta endpoint's."}
    params["required"] = ["messages"]
    spec.components.schema(MESSAGES_REQUEST, params)


def document_request_rules(spec: APISpec, settings: Settings) -> None:
    """Call once the blueprints are registered (their schemas are components by then)."""
    limits = settings.limits
    schemas: dict[str, dict[str, Any]] = spec.components.schemas
    jobs = [schemas[JOB_REQUEST], schemas[BATCH_JOB_REQUEST]]  # alone, and inside a batch
    params_document(spec, settings)
    for job in jobs:
        # Exactly one form; with `params`, what it carries inside it is not given beside it.
        beside = {"anyOf": [{"required": [name]} for name in INSIDE_PARAMS]}
        job["oneOf"] = [{"required": ["prompt"]}, {"required": ["messages"]}, {"required": ["params"], "not": beside}]
        # Named, not referenced: a generator walking a body schema ~200 unions deep (schemathesis
        # took minutes and 800 MB per operation) would fuzz the SDK's types, not this API.
        job["properties"]["params"]["description"] += f" Its schema: #/components/schemas/{MESSAGES_REQUEST}."
        del job["properties"]["temperature"]  # refused whatever its value: offered to no one
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
    if not settings.webhooks_on:  # no client has a webhook secret: any callback_url is refused, so none is offered
        for request in (*jobs, batch, document):
            del request["properties"]["callback_url"]
