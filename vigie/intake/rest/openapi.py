"""The OpenAPI 3.1 document of the REST intake, built from the code it describes.

The metadata schema is the pydantic model that validates requests, and the problem types
are the catalogue `problems.py` answers with, so the document cannot drift from behaviour;
schemathesis then checks the running API against it.

It is served behind the API key, like the endpoint itself: the portal's rule is deny by
default with a short, reviewed allowlist, and the only readers of this document are
integrators, who hold a key (the clinic can also hand them the file). The text is English:
it is a technical contract read by developers, not a page of the portal.
"""

from __future__ import annotations

import copy
import functools
from http import HTTPStatus
from typing import Any

from vigie.intake.rest import idempotency
from vigie.intake.rest.metadata import Metadata
from vigie.intake.rest.problems import ALL_TYPES, PROBLEM_CONTENT_TYPE, ProblemType

_REF = "#/components/schemas/{model}"


def _problem_response(kinds: list[ProblemType]) -> dict[str, Any]:
    lines = "\n".join(f"- `{kind.uri}`: {kind.description}" for kind in kinds)
    response: dict[str, Any] = {
        "description": f"{HTTPStatus(kinds[0].status).phrase}.\n\n{lines}",
        "content": {PROBLEM_CONTENT_TYPE: {"schema": {"$ref": _REF.format(model="Problem")}}},
    }
    headers: dict[str, Any] = {}
    if kinds[0].status == 401:
        headers["WWW-Authenticate"] = {"schema": {"type": "string"}, "required": True}
    if kinds[0].status in (429, 503):
        headers["Retry-After"] = {
            "description": "Seconds to wait before retrying.",
            "schema": {"type": "string", "pattern": "^[0-9]+$"},
            "required": True,
        }
    if kinds[0].status == 405:
        headers["Allow"] = {"schema": {"type": "string"}, "required": True}
    if headers:
        response["headers"] = headers
    return response


def _problems(*statuses: int) -> dict[str, Any]:
    return {
        str(status): _problem_response([kind for kind in ALL_TYPES if kind.status == status])
        for status in statuses
    }


def _components() -> dict[str, Any]:
    metadata = Metadata.model_json_schema(ref_template=_REF)
    schemas: dict[str, Any] = dict(metadata.pop("$defs", {}))
    schemas["Metadata"] = metadata
    schemas["Received"] = {
        "type": "object",
        "additionalProperties": False,
        "required": ["id", "status", "warnings"],
        "properties": {
            "id": {
                "type": "string",
                "description": (
                    "The receipt: the document's id at the clinic, whatever becomes of it "
                    "(quote it to the clinic's IT)."
                ),
            },
            "status": {
                "type": "string",
                "enum": ["received"],
                "description": (
                    "Always `received`: the document is stored (encrypted) and the answer "
                    "is the same whether the identifiers designate a patient here or the "
                    "document waits for an administrator of the clinic to reconcile it. "
                    "Whether an INS or an IPP is known is never told to a sender; the "
                    "reason stays on the clinic's reconciliation page."
                ),
            },
            "warnings": {
                "type": "array",
                "items": {"type": "string"},
                "description": (
                    "What the document contains that acts on its own (`javascript`, "
                    "`launch_action`, `uri_action`...) or that could not be checked "
                    "(`unparsed_content`): it is stored, but offered as a download only."
                ),
            },
        },
    }
    schemas["HprimReceived"] = {
        "type": "object",
        "additionalProperties": False,
        "required": ["status", "ids", "warnings"],
        "properties": {
            "status": {"type": "string", "enum": ["received"]},
            "ids": {
                "type": "array",
                "items": {"type": "string"},
                "minItems": 1,
                "description": (
                    "One receipt per patient of the file, in the file's order; as for a "
                    "document, the same whether the patient is identified here or waits "
                    "for reconciliation."
                ),
            },
            "warnings": {
                "type": "array",
                "items": {"type": "string"},
                "description": (
                    "What the file was read through but the laboratory should fix (no end "
                    "marker, a NIR without its key...): each names a line, never its content."
                ),
            },
        },
    }
    schemas["FieldError"] = {
        "type": "object",
        "additionalProperties": False,
        "required": ["pointer", "detail"],
        "properties": {
            "pointer": {
                "type": "string",
                "description": "JSON pointer into the metadata (`#/patient/ins`) or a part.",
            },
            "detail": {"type": "string"},
        },
    }
    schemas["Problem"] = {
        "type": "object",
        "description": "RFC 9457 problem details.",
        "additionalProperties": False,
        "required": ["type", "title", "status", "detail", "request_id"],
        "properties": {
            "type": {"type": "string", "enum": [kind.uri for kind in ALL_TYPES]},
            "title": {"type": "string"},
            "status": {"type": "integer", "minimum": 400, "maximum": 599},
            "detail": {"type": "string", "description": "What to change in the request."},
            "request_id": {
                "type": "string",
                "description": "The id under which the clinic's audit trail has the request.",
            },
            "errors": {"type": "array", "items": {"$ref": _REF.format(model="FieldError")}},
        },
    }
    return {
        "schemas": schemas,
        "securitySchemes": {
            "apiKey": {
                "type": "http",
                "scheme": "bearer",
                "bearerFormat": "vk_<prefix>_<secret>",
                "description": (
                    "A key created by the clinic for one sending system (`vigie apikey "
                    "create`), possibly bound to source networks. It can send documents, "
                    "never read them. `X-API-Key: <key>` is accepted too."
                ),
            }
        },
    }


@functools.cache
def _build() -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Vigie intake API",
            "version": "1.0.0",
            "description": (
                "Send medical documents (PDF, PNG, JPEG, or HPRIM Santé files) to the clinic. "
                "Patients are "
                "matched exactly on the INS, or on the IPP with its assigning system; "
                "anything less is kept for an administrator to reconcile, and the answer "
                "does not say which (202 with a receipt id either way). A key speaks for "
                "its own source system only: an IPP assigned by another system is refused "
                "(422 foreign-source). Errors are RFC 9457 problem details."
            ),
        },
        "security": [{"apiKey": []}],
        "paths": {
            "/api/v1/documents": {"post": _send_document()},
            "/api/v1/hprim": {"post": _send_hprim()},
            "/api/v1/openapi.json": {"get": _get_openapi()},
        },
        "components": _components(),
    }


def _send_document() -> dict[str, Any]:
    """POST /api/v1/documents: one document and its metadata, multipart."""
    return {
        "operationId": "sendDocument",
        "summary": "Send one document with its metadata",
        "parameters": [
            {
                "name": idempotency.HEADER,
                "in": "header",
                "required": False,
                "description": (
                    "Makes retries safe: the same key with the same file and "
                    "metadata returns the first answer (and stores nothing "
                    "more); with another payload, 409."
                ),
                "schema": {
                    "type": "string",
                    "minLength": 1,
                    "maxLength": idempotency.MAX_LENGTH,
                    "pattern": "^[!-~]([ -~]*[!-~])?$",
                },
            }
        ],
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "required": ["file", "metadata"],
                        "properties": {
                            "file": {
                                "type": "string",
                                "format": "binary",
                                "description": "The document itself.",
                            },
                            "metadata": {"$ref": _REF.format(model="Metadata")},
                        },
                    },
                    "encoding": {
                        "file": {"contentType": "application/pdf, image/png, image/jpeg"},
                        "metadata": {"contentType": "application/json"},
                    },
                }
            },
        },
        "responses": {
            "202": {
                "description": (
                    "Received: stored durably (encrypted) before this answer. "
                    "The same answer whether or not the patient is identified "
                    "here; only the receipt id differs."
                ),
                "headers": {
                    "Idempotent-Replayed": {
                        "description": "Present on a replayed answer.",
                        "schema": {"type": "string", "enum": ["true"]},
                    }
                },
                "content": {
                    "application/json": {"schema": {"$ref": _REF.format(model="Received")}}
                },
            },
            **_problems(400, 401, 403, 409, 411, 413, 415, 422, 429, 503),
        },
    }


def _send_hprim() -> dict[str, Any]:
    """POST /api/v1/hprim: one HPRIM Santé file, the body as the laboratory wrote it."""
    binary = {"schema": {"type": "string", "format": "binary"}}
    return {
        "operationId": "sendHprim",
        "summary": "Send one HPRIM Santé file (one or several patients)",
        "description": (
            "The body is the file exactly as written (ISO-8859-1, Windows-1252, CP850, "
            "MacRoman, UTF-8 or UTF-16 with a BOM; the charset is detected, a `charset` "
            "parameter is ignored). Each patient becomes one document holding that patient's "
            "part of the file; the whole file is stored or none of it. Patients are matched "
            "on a NIR that can be theirs (its key, birth year and month agree), anything "
            "less waits for reconciliation. The same bytes sent again get the first answer."
        ),
        "requestBody": {
            "required": True,
            "content": {
                "text/plain": binary,
                "application/octet-stream": binary,
            },
        },
        "responses": {
            "202": {
                "description": (
                    "Received: every patient of the file stored durably (encrypted) before "
                    "this answer."
                ),
                "headers": {
                    "Idempotent-Replayed": {
                        "description": "Present when these bytes were received before.",
                        "schema": {"type": "string", "enum": ["true"]},
                    }
                },
                "content": {
                    "application/json": {"schema": {"$ref": _REF.format(model="HprimReceived")}}
                },
            },
            **_problems(401, 403, 411, 413, 415, 422, 429, 503),
        },
    }


def _get_openapi() -> dict[str, Any]:
    """GET /api/v1/openapi.json: this document."""
    return {
        "operationId": "getOpenApi",
        "summary": "This document",
        "responses": {
            "200": {
                "description": "The OpenAPI document.",
                "content": {"application/json": {"schema": {"type": "object"}}},
            },
            **_problems(401, 403, 429, 503),
        },
    }


def schema() -> dict[str, Any]:
    """The OpenAPI document (a copy: callers may not alter the cached one)."""
    return copy.deepcopy(_build())
