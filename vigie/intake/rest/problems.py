"""RFC 9457 problem details for the REST API: one catalogue, one way to answer.

Every refusal names a stable `type` (what an integrator's code switches on), a translated
`title` (what kind of problem), a `detail` (what to change in this request) and, for field
problems, an `errors` list of JSON pointers into the metadata. `request_id` is the id the
audit trail recorded, so a lab's support can quote it to the clinic's IT.

The type URIs are URNs on purpose: they identify, they are not links. Each is described in
the OpenAPI document (`openapi.py`), which is where an integrator reads what they mean.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypedDict

from django.http import HttpRequest, JsonResponse
from django.utils.functional import Promise
from django.utils.translation import gettext_lazy as _

from vigie.audit.log import request_id

PROBLEM_CONTENT_TYPE = "application/problem+json"
TYPE_PREFIX = "urn:vigie:problem:"
# What a client should wait before retrying when storage or the audit log is unavailable.
RETRY_AFTER_SECONDS = 30


class FieldError(TypedDict):
    # RFC 6901 JSON pointer: "#/patient/birth_date" inside the metadata, "#/file" for a part.
    pointer: str
    detail: str


@dataclass(frozen=True)
class ProblemType:
    slug: str
    status: int
    title: Promise
    # For the OpenAPI document: when this problem happens.
    description: str

    @property
    def uri(self) -> str:
        return TYPE_PREFIX + self.slug


MALFORMED_REQUEST = ProblemType(
    "malformed-request",
    400,
    _("Malformed request"),
    "A multipart part is missing or unreadable, or the metadata is not JSON.",
)
INVALID_METADATA = ProblemType(
    "invalid-metadata",
    400,
    _("Invalid metadata"),
    "The metadata JSON does not follow the schema; `errors` points at each field.",
)
INVALID_IDEMPOTENCY_KEY = ProblemType(
    "invalid-idempotency-key",
    400,
    _("Invalid Idempotency-Key"),
    "The Idempotency-Key header is empty, longer than 255 characters or not printable ASCII.",
)
UNAUTHORIZED = ProblemType(
    "unauthorized",
    401,
    _("API key missing or not valid"),
    "No API key, a malformed, unknown or revoked one.",
)
ADDRESS_NOT_ALLOWED = ProblemType(
    "address-not-allowed",
    403,
    _("API key not allowed from this address"),
    "The key is bound to networks and the request came from elsewhere.",
)
METHOD_NOT_ALLOWED = ProblemType(
    "method-not-allowed",
    405,
    _("Method not allowed"),
    "Only the methods in the Allow header are accepted (an API key can never read).",
)
IDEMPOTENCY_CONFLICT = ProblemType(
    "idempotency-conflict",
    409,
    _("Idempotency-Key already used for another request"),
    "The Idempotency-Key was already used with a different file or metadata.",
)
LENGTH_REQUIRED = ProblemType(
    "length-required",
    411,
    _("Content-Length required"),
    "The request has no Content-Length (chunked uploads are not accepted).",
)
PAYLOAD_TOO_LARGE = ProblemType(
    "payload-too-large",
    413,
    _("Document too large"),
    "The declared or actual size is above the server's document size limit.",
)
UNSUPPORTED_MEDIA_TYPE = ProblemType(
    "unsupported-media-type",
    415,
    _("Unsupported media type"),
    "The request is not multipart/form-data, or the document type is not accepted.",
)
INVALID_DOCUMENT = ProblemType(
    "invalid-document",
    422,
    _("Document refused"),
    "The file is empty, truncated, not what it claims to be, or the patient identifiers "
    "are invalid (an INS with a wrong control key...). Nothing was stored.",
)
FOREIGN_SOURCE = ProblemType(
    "foreign-source",
    422,
    _("Another sender's identifier"),
    "`patient.ipp_source` names a system other than this API key's source system. A key "
    "speaks only for its own system (or sends the clinic's own IPP with an empty "
    "`ipp_source`). Nothing was stored and nothing was learnt.",
)
TOO_MANY_REFUSALS = ProblemType(
    "too-many-refusals",
    429,
    _("Too many refused requests"),
    "This address sent too many requests without a valid API key in the current minute; "
    "nothing is checked until Retry-After seconds have passed.",
)
STORAGE_UNAVAILABLE = ProblemType(
    "storage-unavailable",
    503,
    _("Storage unavailable"),
    "The document could not be stored durably. Nothing was kept: retry after Retry-After.",
)
AUDIT_UNAVAILABLE = ProblemType(
    "audit-unavailable",
    503,
    _("Audit log unavailable"),
    "The reception could not be audited, so nothing was kept: retry after Retry-After.",
)
CONFLICTING_RETRY = ProblemType(
    "concurrent-request",
    503,
    _("Concurrent request"),
    "Another request changed the same data at the same moment: retry after Retry-After.",
)

DATABASE_UNAVAILABLE = ProblemType(
    "database-unavailable",
    503,
    _("Database unavailable"),
    "Vigie could not reach its database (a restart, a failover): retry after Retry-After, "
    "with the same Idempotency-Key, which never stores a document twice.",
)

ALL_TYPES = (
    MALFORMED_REQUEST,
    INVALID_METADATA,
    INVALID_IDEMPOTENCY_KEY,
    UNAUTHORIZED,
    ADDRESS_NOT_ALLOWED,
    METHOD_NOT_ALLOWED,
    IDEMPOTENCY_CONFLICT,
    LENGTH_REQUIRED,
    PAYLOAD_TOO_LARGE,
    UNSUPPORTED_MEDIA_TYPE,
    INVALID_DOCUMENT,
    FOREIGN_SOURCE,
    TOO_MANY_REFUSALS,
    STORAGE_UNAVAILABLE,
    AUDIT_UNAVAILABLE,
    CONFLICTING_RETRY,
    DATABASE_UNAVAILABLE,
)


def problem(
    request: HttpRequest,
    kind: ProblemType,
    detail: str,
    *,
    errors: list[FieldError] | None = None,
    headers: dict[str, str] | None = None,
) -> JsonResponse:
    """The problem+json answer for `kind`, with `detail` saying what to change."""
    body: dict[str, Any] = {
        "type": kind.uri,
        "title": str(kind.title),
        "status": kind.status,
        "detail": str(detail),
        "request_id": request_id(request),
    }
    if errors:
        body["errors"] = errors
    response = JsonResponse(
        body,
        status=kind.status,
        content_type=PROBLEM_CONTENT_TYPE,
        json_dumps_params={"ensure_ascii": False},
    )
    if kind.status == 401:
        response["WWW-Authenticate"] = 'Bearer realm="vigie"'
    if kind.status == 503:
        response["Retry-After"] = str(RETRY_AFTER_SECONDS)
    for name, value in (headers or {}).items():
        response[name] = value
    return response
