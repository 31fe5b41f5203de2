"""The FHIR R4 endpoint's writes: systems create DocumentReferences with an API key.

Doctors' reads are the portal's (`vigie.portal.views.fhir`), which hands a POST on
`DocumentReference` to `create_document_reference` here. Every view is `@authenticates_itself`
(through `fhir_view`) so that its refusals are OperationOutcomes (the middleware's generic
401 is plain text), and each refuses on its own: writes take an API key and nothing else (a
doctor's session grants no write, which is also why CSRF protection is not needed on them: a
cookie never authorises anything here).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.utils import timezone

from vigie.audit import refusals
from vigie.audit.log import record
from vigie.intake.apikeys import Refusal, authenticate
from vigie.intake.fhir.endpoint import base_url, fhir_view, method_not_allowed
from vigie.intake.fhir.outcomes import (
    FhirError,
    error_response,
    fhir_response,
    operation_outcome,
)
from vigie.intake.fhir.outcomes import Issue as OutcomeIssue
from vigie.intake.fhir.resources import (
    Submission,
    capability_statement,
    parse_document_reference,
)
from vigie.intake.models import ApiKey
from vigie.records.ingest import DocumentMeta
from vigie.records.ingest_errors import ForeignSource, InvalidDocument, StorageUnavailable
from vigie.records.models import Document, PendingDocument
from vigie.records.receive import Received, receive

logger = logging.getLogger(__name__)


_JSON_TYPES = frozenset({"application/fhir+json", "application/json", "application/json+fhir"})
# base64 grows a document by 4/3; the JSON around it is small. Room for both, no more.
_ENVELOPE_BYTES = 1024 * 1024
_STARTED = timezone.now()


# --- who is asking -------------------------------------------------------------------


def _writer(request: HttpRequest) -> ApiKey:
    key = authenticate(request)
    if isinstance(key, Refusal):
        if key.reason == refusals.THROTTLED and key.retry_after is not None:
            raise FhirError.one(
                429, "throttled", key.message, headers={"Retry-After": str(key.retry_after)}
            )
        status = 401 if key.reason in ("missing", "malformed", "unknown") else 403
        headers = {"WWW-Authenticate": 'Bearer realm="vigie"'} if status == 401 else {}
        raise FhirError.one(status, "security", key.message, headers=headers)
    return key


# --- public ----------------------------------------------------------------------------


@fhir_view
def metadata(request: HttpRequest) -> HttpResponse:
    # Public like every FHIR server's metadata: it describes the endpoint, no patient.
    if request.method not in ("GET", "HEAD"):
        return method_not_allowed()
    return fhir_response(capability_statement(base_url(request), _STARTED))


# --- create ----------------------------------------------------------------------------


def _read_json(request: HttpRequest) -> Any:
    content_type = (request.content_type or "").lower()
    if content_type not in _JSON_TYPES:
        raise FhirError.one(
            415,
            "not-supported",
            f"send application/fhir+json (got {content_type[:60]!r}); XML is not supported",
        )
    limit = settings.VIGIE_MAX_DOCUMENT_SIZE * 4 // 3 + _ENVELOPE_BYTES
    try:
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        declared = 0
    if declared > limit:
        raise FhirError.one(413, "too-costly", f"the request is larger than {limit} bytes")
    body = request.read(limit + 1)
    if len(body) > limit:
        raise FhirError.one(413, "too-costly", f"the request is larger than {limit} bytes")
    try:
        return json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise FhirError.one(400, "structure", f"the body is not valid JSON: {exc}"[:300]) from None


def _refused(request: HttpRequest, key: ApiKey, error: FhirError) -> HttpResponse:
    """Audit a refused submission (the sender's integrator will ask what happened)."""
    record(
        "intake.fhir.refused",
        request=request,
        outcome="failure",
        reason=str(error)[:500],
        extra={"key": key.name, "status": error.status},
    )
    return error_response(error)


def _store(request: HttpRequest, key: ApiKey, submission: Submission) -> Received:
    foreign = [s for s in submission.ipp_systems if s.casefold() != key.source_system.casefold()]
    if foreign:
        # Checked over every identifier, not only the one matched: a Patient naming
        # another lab's number is that lab's word, which this key cannot give.
        raise ForeignSource(
            f"the subject names the identifier system {foreign[0][:100]!r}, but this API key "
            f"speaks for {key.source_system!r} only (and the INS, and the clinic's own IPP): "
            "nothing was stored"
        )
    meta = DocumentMeta(
        kind=submission.kind,
        title=submission.title,
        clinical_date=submission.clinical_date,
        source_system=key.source_system,
        author=submission.author,
        content_type=submission.content_type,
    )

    def within(row: Document | PendingDocument) -> None:
        # In the row's transaction: the document and the record of who sent it commit
        # together, or neither does.
        is_document = isinstance(row, Document)
        record(
            "intake.fhir.create",
            request=request,
            patient=row.patient if isinstance(row, Document) else None,
            document=row if isinstance(row, Document) else None,
            extra={
                "key": key.name,
                "source_system": key.source_system,
                "to_reconcile": not is_document,
                "row_id": str(row.pk),
                "active_content": row.active_content,
            },
        )

    return receive(
        submission.sender,
        meta,
        submission.data,
        channel="fhir",
        extra={"key": key.name},
        within=within,
    )


def _create(
    request: HttpRequest,
    payload: Any,
    *,
    bundled_binaries: Mapping[str, Mapping[str, Any]] | None = None,
    bundled_patients: Mapping[str, Mapping[str, Any]] | None = None,
    key: ApiKey,
) -> tuple[int, dict[str, Any], dict[str, str]]:
    """Store one DocumentReference; (status, body, headers) or FhirError."""
    submission = parse_document_reference(
        payload, bundled_binaries=bundled_binaries, bundled_patients=bundled_patients
    )
    try:
        received = _store(request, key, submission)
    except ForeignSource as exc:
        raise FhirError.one(
            422, "business-rule", str(exc), expression=["DocumentReference.subject"]
        ) from None
    except InvalidDocument as exc:
        raise FhirError.one(422, "invalid", str(exc)) from None
    except StorageUnavailable as exc:
        raise FhirError.one(
            503, "transient", f"{exc}; nothing was stored, send it again later"
        ) from None
    warnings = [
        OutcomeIssue(
            "informational",
            f"the document has active content ({warning}): stored, offered as a download only",
            severity="warning",
        )
        for warning in received.warnings
    ]
    # One answer whether the subject was identified here or the document waits for an
    # administrator: a key holder must not learn whether an INS or IPP is known.
    # The reason stays on the clinic's reconciliation page.
    issues = [
        OutcomeIssue(
            "informational",
            f"received as {received.id}: stored encrypted at the clinic, which files it "
            "under its patient; a key cannot read it back",
            severity="information",
        ),
        *warnings,
    ]
    return 202, operation_outcome(issues), {}


def create_document_reference(request: HttpRequest) -> HttpResponse:
    key = _writer(request)
    try:
        payload = _read_json(request)
        status, body, headers = _create(request, payload, key=key)
    except FhirError as error:
        if error.status >= 500:
            return error_response(error)
        return _refused(request, key, error)
    return fhir_response(body, status, headers)


@fhir_view
def transaction(request: HttpRequest) -> HttpResponse:
    """A transaction Bundle: one DocumentReference and the Binary (or Patient) it refers to.

    One DocumentReference per Bundle keeps "all or nothing" true without a distributed
    transaction over several documents' blobs.
    """
    key = _writer(request)
    if request.method != "POST":
        return method_not_allowed()
    try:
        bundle = _read_json(request)
        references, binaries, patients = _split_bundle(bundle)
        status, body, _headers = _create(
            request, references, bundled_binaries=binaries, bundled_patients=patients, key=key
        )
    except FhirError as error:
        if error.status >= 500:
            return error_response(error)
        return _refused(request, key, error)
    entry: dict[str, Any] = {"response": {"status": f"{status} Accepted", "outcome": body}}
    return fhir_response(
        {"resourceType": "Bundle", "type": "transaction-response", "entry": [entry]}, 200
    )


def _split_bundle(
    bundle: Any,
) -> tuple[Any, dict[str, Mapping[str, Any]], dict[str, Mapping[str, Any]]]:
    if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
        raise FhirError.one(400, "structure", "POST /fhir/ takes a Bundle of type transaction")
    if bundle.get("type") != "transaction":
        raise FhirError.one(422, "not-supported", "only Bundles of type transaction are taken")
    entries = bundle.get("entry")
    if not isinstance(entries, list):
        raise FhirError.one(
            400, "structure", "the Bundle has no entry list", expression=["Bundle.entry"]
        )
    references: list[Any] = []
    binaries: dict[str, Mapping[str, Any]] = {}
    patients: dict[str, Mapping[str, Any]] = {}
    for index, entry in enumerate(entries):
        resource = entry.get("resource") if isinstance(entry, dict) else None
        if not isinstance(resource, dict):
            raise FhirError.one(
                400, "structure", "an entry has no resource", expression=[f"Bundle.entry[{index}]"]
            )
        kind = resource.get("resourceType")
        names = [str(entry.get("fullUrl") or "")]
        if resource.get("id"):
            names.append(f"{kind}/{resource['id']}")
        if kind == "DocumentReference":
            references.append(resource)
        elif kind in ("Binary", "Patient"):
            target = binaries if kind == "Binary" else patients
            target.update({name: resource for name in names if name})
        else:
            raise FhirError.one(
                422,
                "not-supported",
                f"a transaction may carry a DocumentReference, Binary and Patient, not {str(kind)[:40]!r}",
                expression=[f"Bundle.entry[{index}].resource"],
            )
    if len(references) != 1:
        raise FhirError.one(
            422, "not-supported", "send exactly one DocumentReference per transaction Bundle"
        )
    return references[0], binaries, patients


# --- reads (a signed-in, verified doctor) ----------------------------------------------
