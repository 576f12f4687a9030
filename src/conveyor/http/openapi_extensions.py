"""Conveyor's own endpoints, in OpenAPI: what the served document adds to Mailchimp's subset
(README "Beyond Mailchimp", docs/emulator.md, docs/observability.md). Plain data."""

from __future__ import annotations

from typing import Any

TAG = "Conveyor extensions"
PROBLEM = {"$ref": "#/components/schemas/AccountExports"}
BATCH = {"$ref": "#/components/schemas/BatchesBatches"}


def _problem_default() -> dict[str, Any]:
    return {
        "description": "An error, as a problem document.",
        "content": {"application/problem+json": {"schema": PROBLEM}},
    }


def _param(name: str, where: str, description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": name,
        "in": where,
        "required": where == "path",
        "description": description,
        "schema": schema,
    }


BATCH_ID = _param("batch_id", "path", "The unique id for the batch operation.", {"type": "string"})
WEBHOOK_ID = _param(
    "batch_webhook_id", "path", "The unique id for the batch webhook.", {"type": "string"}
)


def _op(
    operation_id: str,
    summary: str,
    responses: dict[str, Any],
    *,
    parameters: list[dict[str, Any]] | None = None,
    body: dict[str, Any] | None = None,
    secured: bool = True,
) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "operationId": operation_id,
        "summary": summary,
        "tags": [TAG],
        "x-conveyor-extension": True,
        "parameters": parameters or [],
        "responses": {**responses, "default": _problem_default()},
    }
    if body is not None:
        operation["requestBody"] = {
            "required": False,
            "content": {"application/json": {"schema": body}},
        }
    if not secured:
        operation["security"] = []
    return operation


def _json(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


OPERATION_ITEM: dict[str, Any] = {
    "type": "object",
    "properties": {
        "seq": {"type": "integer", "description": "Position in the submitted array, from 0."},
        "page": {"type": "integer"},
        "operation_id": {"type": ["string", "null"]},
        "method": {"type": "string"},
        "path": {"type": "string"},
        "status": {"type": "string", "enum": ["pending", "succeeded", "failed"]},
        "status_code": {"type": ["integer", "null"]},
        "response": {"description": "The decoded JSON answer; null while pending."},
    },
}

SCHEMAS: dict[str, Any] = {
    "ConveyorBatchOperations": {
        "type": "object",
        "properties": {
            "batch_id": {"type": "string"},
            "operations": {"type": "array", "items": OPERATION_ITEM},
            "total_items": {"type": "integer"},
            "_links": {"type": "array", "items": {"$ref": "#/components/schemas/Links"}},
        },
    },
    "ConveyorRetryRequest": {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "status_codes": {
                "type": "array",
                "minItems": 1,
                "items": {"type": "integer", "minimum": 100, "maximum": 599},
                "description": "Retry only the failures with these status codes.",
            }
        },
    },
    "ConveyorDelivery": {
        "type": "object",
        "properties": {
            "id": {"type": "string"},
            "batch_id": {"type": "string"},
            "state": {"type": "string"},
            "attempts": {"type": "integer"},
            "last_status_code": {"type": ["integer", "null"]},
            "last_error": {"type": "string"},
            "created_at": {"type": "string"},
            "delivered_at": {"type": "string"},
            "next_attempt_at": {"type": "string"},
            "history": {"type": "array", "items": {"type": "object"}},
        },
    },
}

BATCH_PROPERTIES: dict[str, Any] = {
    "canceled_at": {
        "type": "string",
        "format": "date-time",
        "description": "Conveyor: when a cancel stopped the batch (only when canceled).",
    },
    "retry_of": {
        "type": "string",
        "description": "Conveyor: the batch whose failures this retry runs (only on a retry).",
    },
}

IDEMPOTENCY_KEY = _param(
    "Idempotency-Key",
    "header",
    "Conveyor: the same key and body within 24 hours answer the first batch, made once.",
    {"type": "string", "minLength": 1, "maxLength": 255},
)

PATHS: dict[str, Any] = {
    "/batches/{batch_id}/operations": {
        "get": _op(
            "conveyorBatchOperations",
            "Per-operation results of a batch, live",
            {
                "200": _json(
                    "A page of the batch's operations.",
                    {"$ref": "#/components/schemas/ConveyorBatchOperations"},
                )
            },
            parameters=[
                BATCH_ID,
                _param(
                    "count",
                    "query",
                    "Items per page (at most 1000).",
                    {"type": "integer", "default": 10, "maximum": 1000},
                ),
                _param("offset", "query", "Items to skip.", {"type": "integer", "default": 0}),
                _param(
                    "status",
                    "query",
                    "Only these.",
                    {"type": "string", "enum": ["pending", "succeeded", "failed"]},
                ),
                _param("operation_id", "query", "Only this operation_id.", {"type": "string"}),
                _param("fields", "query", "Fields to return.", {"type": "string"}),
                _param("exclude_fields", "query", "Fields to leave out.", {"type": "string"}),
            ],
        )
    },
    "/batches/{batch_id}/results.ndjson": {
        "get": _op(
            "conveyorBatchResultsNdjson",
            "A batch's results as NDJSON, streamed",
            {
                "200": {
                    "description": "One JSON object per line: operation_id, status_code, response.",
                    "content": {"application/x-ndjson": {"schema": {"type": "string"}}},
                }
            },
            parameters=[
                BATCH_ID,
                _param(
                    "status",
                    "query",
                    "Only these.",
                    {"type": "string", "enum": ["succeeded", "failed"]},
                ),
            ],
        )
    },
    "/batches/{batch_id}/retry": {
        "post": _op(
            "conveyorBatchRetry",
            "Run a finished batch's failures again, as a new batch",
            {"200": _json("The new batch.", BATCH)},
            parameters=[BATCH_ID],
            body={"$ref": "#/components/schemas/ConveyorRetryRequest"},
        )
    },
    "/batches/{batch_id}/cancel": {
        "post": _op(
            "conveyorBatchCancel",
            "Stop a batch, keeping what ran",
            {"200": _json("The batch, finalizing.", BATCH)},
            parameters=[BATCH_ID],
        )
    },
    "/batches/{batch_id}/events": {
        "get": _op(
            "conveyorBatchEvents",
            "Live progress as server-sent events",
            {
                "200": {
                    "description": "`progress` events, then one `finished`.",
                    "content": {"text/event-stream": {"schema": {"type": "string"}}},
                }
            },
            parameters=[BATCH_ID],
        )
    },
    "/batches/{batch_id}-response.tar.gz": {
        "get": _op(
            "conveyorBatchArchive",
            "The results archive (the signed response_body_url)",
            {
                "200": {
                    "description": "Mailchimp's archive format.",
                    "content": {
                        "application/gzip": {"schema": {"type": "string", "format": "binary"}}
                    },
                }
            },
            parameters=[
                BATCH_ID,
                _param("expires", "query", "Signed URL expiry.", {"type": "string"}),
                _param("signature", "query", "Signed URL signature.", {"type": "string"}),
            ],
            secured=False,
        )
    },
    "/batch-webhooks/{batch_webhook_id}/deliveries": {
        "get": _op(
            "conveyorWebhookDeliveries",
            "A batch webhook's deliveries",
            {
                "200": _json(
                    "A page of deliveries.",
                    {
                        "type": "object",
                        "properties": {
                            "deliveries": {
                                "type": "array",
                                "items": {"$ref": "#/components/schemas/ConveyorDelivery"},
                            },
                            "total_items": {"type": "integer"},
                        },
                    },
                )
            },
            parameters=[
                WEBHOOK_ID,
                _param("count", "query", "Items per page.", {"type": "integer"}),
                _param("offset", "query", "Items to skip.", {"type": "integer"}),
            ],
        )
    },
    "/batch-webhooks/{batch_webhook_id}/deliveries/{delivery_id}/redeliver": {
        "post": _op(
            "conveyorWebhookRedeliver",
            "Send a delivery again",
            {
                "200": _json(
                    "The delivery, queued.", {"$ref": "#/components/schemas/ConveyorDelivery"}
                )
            },
            parameters=[
                WEBHOOK_ID,
                _param("delivery_id", "path", "The delivery.", {"type": "string"}),
            ],
        )
    },
    "/openapi.json": {
        "get": _op(
            "conveyorOpenApi",
            "This document",
            {"200": _json("OpenAPI 3.1.", {"type": "object"})},
            secured=False,
        )
    },
}

# Outside the API root: path items with their own server (the server's root).
HEALTH_PATHS: dict[str, Any] = {
    "/healthz": {
        "get": _op("conveyorHealthz", "The process serves HTTP",
                   {"200": _json("Alive.", {"type": "object"})}, secured=False)
    },
    "/readyz": {
        "get": _op("conveyorReadyz", "Every dependency answers",
                   {"200": _json("Ready.", {"type": "object"}),
                    "503": _json("A dependency failed.", {"type": "object"})}, secured=False)
    },
}  # fmt: skip

METRICS_PATHS: dict[str, Any] = {
    "/metrics": {
        "get": {
            **_op(
                "conveyorMetrics",
                "Prometheus metrics (text format)",
                {"200": {"description": "The exposition.",
                         "content": {"text/plain": {"schema": {"type": "string"}}}}},
            ),
            "security": [{}, {"metricsToken": []}],
        }
    }
}  # fmt: skip


def _control(method: str, name: str, summary: str) -> dict[str, Any]:
    return {
        method: {
            **_op(
                f"conveyorTest{name.capitalize()}{method.capitalize()}",
                summary,
                {"200": _json("Done.", {"type": "object"})},
            ),
            "security": [{}, {"adminToken": []}],
        }
    }


TEST_CONTROL_PATHS: dict[str, Any] = {
    "/_conveyor/reset": _control("post", "reset", "Empty every account's data"),
    "/_conveyor/fixtures": _control("post", "fixtures", "Seed lists and members"),
    "/_conveyor/requests": {
        **_control("get", "requests", "The request journal"),
        **_control("delete", "requests", "Empty the request journal"),
    },
    "/_conveyor/faults": {
        **_control("get", "faults", "The fault rules"),
        **_control("post", "faults", "Add a fault rule"),
        **_control("delete", "faults", "Remove the fault rules"),
    },
    "/_conveyor/clock": {
        **_control("get", "clock", "The virtual clock"),
        **_control("post", "clock", "Move the virtual clock"),
    },
    "/_conveyor/pace": {
        **_control("get", "pace", "The pace of batch work"),
        **_control("post", "pace", "Slow batch work down"),
    },
}

SECURITY_SCHEMES: dict[str, Any] = {
    "basicAuth": {
        "type": "http",
        "scheme": "basic",
        "description": "Any user name, the API key as the password (as Mailchimp).",
    },
    "metricsToken": {"type": "http", "scheme": "bearer", "description": "CONVEYOR_METRICS_TOKEN"},
    "adminToken": {"type": "http", "scheme": "bearer", "description": "CONVEYOR_ADMIN_TOKEN"},
}
