"""The FHIR R4 endpoint: systems create DocumentReferences with an API key; signed-in
doctors read within their scope, through the portal's own scope lookups and its one door.

Every view here is `@authenticates_itself` so that its refusals are OperationOutcomes
(the middleware's generic 401 is plain text), and each refuses on its own:
- writes take an API key and nothing else (a doctor's session grants no write, which is
  also why CSRF protection is not needed on them: a cookie never authorises anything here);
- reads take a verified session (password + second factor) and nothing else: a request
  that presents an API key is refused with 403, whatever else it carries.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from datetime import date, datetime, timedelta
from functools import wraps
from typing import Any, TypeVar, cast

from django.conf import settings
from django.db.models import Q, QuerySet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBase
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt

from vigie.audit.log import AuditUnavailable, record
from vigie.intake.apikeys import Refusal, authenticate, presented_key
from vigie.intake.fhir.outcomes import (
    FhirError,
    error_response,
    fhir_response,
    not_found,
    operation_outcome,
    outcome_response,
    unauthenticated,
    unavailable,
)
from vigie.intake.fhir.outcomes import Issue as OutcomeIssue
from vigie.intake.fhir.resources import (
    INS_SYSTEM,
    LOINC,
    LOINC_KINDS,
    Submission,
    capability_statement,
    clinic_ipp_system,
    document_reference,
    parse_document_reference,
    patient_resource,
    search_bundle,
    vigie_id,
)
from vigie.intake.models import ApiKey
from vigie.portal.door import serve_document
from vigie.portal.middleware import authenticates_itself, is_verified
from vigie.portal.scope import document_in_scope_or_404, patient_in_scope_or_404
from vigie.portal.services import SEARCH_LIMIT, search_patients
from vigie.records.access import LockedDown, patients_in_scope
from vigie.records.ingest import DocumentMeta
from vigie.records.ingest_errors import ForeignSource, InvalidDocument, StorageUnavailable
from vigie.records.models import Document, Patient, PendingDocument
from vigie.records.receive import Received, receive

logger = logging.getLogger(__name__)

View = TypeVar("View", bound=Callable[..., HttpResponseBase])

_JSON_TYPES = frozenset({"application/fhir+json", "application/json", "application/json+fhir"})
# base64 grows a document by 4/3; the JSON around it is small. Room for both, no more.
_ENVELOPE_BYTES = 1024 * 1024
# Searches answer at most this many entries (no paging yet); the Bundle's total says so.
_MAX_RESULTS = 200
_STARTED = timezone.now()


def _fhir_view(view: View) -> View:
    """Fail closed, in FHIR: no audit or a lockdown → 503 and nothing served; never a
    traceback. (The lockdown itself is enforced by the access decision every read asks.)"""

    @wraps(view)
    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        try:
            return view(request, *args, **kwargs)
        except FhirError as error:
            return error_response(error)
        except AuditUnavailable:
            logger.exception("audit trail unavailable: refusing %s", request.path)
            return unavailable("the audit trail is unavailable; nothing was read or stored")
        except LockedDown:
            # The reason of the lockdown is for administrators, not for every client.
            return unavailable(
                "the portal is in lockdown: no record is served until an administrator clears it"
            )

    return cast(View, authenticates_itself(csrf_exempt(wrapped)))


def _base(request: HttpRequest) -> str:
    return request.build_absolute_uri("/fhir/")


# --- who is asking -------------------------------------------------------------------


def _reader_refusal(request: HttpRequest) -> HttpResponse | None:
    """None when a verified doctor session asks; else the OperationOutcome refusing it."""
    if presented_key(request) is not None:
        # A key is for ingest only: refused before it is even checked, so no key, valid
        # or stolen, turns into a way to read.
        record(
            "intake.fhir.read_refused",
            request=request,
            outcome="denied",
            reason="api_key",
            extra={"path": request.path[:200]},
        )
        return outcome_response(403, "forbidden", "API keys can only create documents")
    if not is_verified(request):
        return unauthenticated()
    return None


def _read_refusal(request: HttpRequest) -> HttpResponse | None:
    """`_reader_refusal`, then 405 for anything but GET and HEAD. Who asks comes first: an
    outsider learns nothing, not even which methods exist."""
    refusal = _reader_refusal(request)
    if refusal is not None:
        return refusal
    if request.method not in ("GET", "HEAD"):
        return _method_not_allowed()
    return None


def _writer(request: HttpRequest) -> ApiKey:
    key = authenticate(request)
    if isinstance(key, Refusal):
        status = 401 if key.reason in ("missing", "malformed", "unknown") else 403
        headers = {"WWW-Authenticate": 'Bearer realm="vigie"'} if status == 401 else {}
        raise FhirError.one(status, "security", key.message, headers=headers)
    return key


# --- public ----------------------------------------------------------------------------


@_fhir_view
def metadata(request: HttpRequest) -> HttpResponse:
    # Public like every FHIR server's metadata: it describes the endpoint, no patient.
    if request.method not in ("GET", "HEAD"):
        return _method_not_allowed()
    return fhir_response(capability_statement(_base(request), _STARTED))


def _method_not_allowed() -> HttpResponse:
    return outcome_response(405, "not-supported", "this method is not supported here")


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
    # administrator (issue 16): a key holder must not learn whether an INS or IPP is known.
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


@_fhir_view
def document_reference_type(request: HttpRequest) -> HttpResponse:
    if request.method == "POST":
        return _create_one(request)
    if request.method in ("GET", "HEAD"):
        return _search_documents(request)
    return _method_not_allowed()


def _create_one(request: HttpRequest) -> HttpResponse:
    key = _writer(request)
    try:
        payload = _read_json(request)
        status, body, headers = _create(request, payload, key=key)
    except FhirError as error:
        if error.status >= 500:
            return error_response(error)
        return _refused(request, key, error)
    return fhir_response(body, status, headers)


@_fhir_view
def transaction(request: HttpRequest) -> HttpResponse:
    """A transaction Bundle: one DocumentReference and the Binary (or Patient) it refers to.

    One DocumentReference per Bundle keeps "all or nothing" true without a distributed
    transaction over several documents' blobs.
    """
    key = _writer(request)
    if request.method != "POST":
        return _method_not_allowed()
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


def _search_error(diagnostics: str, parameter: str) -> FhirError:
    return FhirError.one(400, "not-supported", diagnostics, expression=[parameter])


def _only(request: HttpRequest, allowed: set[str]) -> None:
    # Unknown parameters are refused rather than ignored: a filter silently dropped would
    # return more patient data than the doctor asked for.
    for name in request.GET:
        if name not in allowed and name != "_format":
            raise _search_error(
                f"unsupported search parameter {name[:40]!r}; supported: {', '.join(sorted(allowed))}",
                name,
            )


def _search_documents(request: HttpRequest) -> HttpResponse:
    refusal = _reader_refusal(request)
    if refusal is not None:
        return refusal
    _only(request, {"patient", "subject", "type", "date", "_count"})
    wanted = request.GET.get("patient") or request.GET.get("subject")
    if not wanted:
        raise _search_error("give the patient: DocumentReference?patient=<Patient id>", "patient")
    public_id = vigie_id(wanted.removeprefix("Patient/"))
    try:
        patient, decision = patient_in_scope_or_404(request, public_id, "list")
    except Http404:
        return not_found()
    documents = Document.objects.filter(patient=patient).select_related("patient")
    documents = _filter_types(documents, request.GET.getlist("type"))
    documents = _filter_dates(documents, request.GET.getlist("date"))
    found = list(documents.order_by("-clinical_date", "-received_at")[: _count(request)])
    # The list of a patient's documents is itself a disclosure, as on the portal's page.
    record(
        "patient.view",
        request=request,
        patient=patient,
        extra={
            "basis": decision.reason,
            "emergency": decision.emergency,
            "channel": "fhir",
            "resource": "DocumentReference",
        },
    )
    return fhir_response(search_bundle([document_reference(d) for d in found], _base(request)))


def _count(request: HttpRequest) -> int:
    raw = request.GET.get("_count", "")
    if not raw:
        return _MAX_RESULTS
    if not raw.isdigit():
        raise _search_error("_count must be a whole number", "_count")
    return min(int(raw), _MAX_RESULTS)


def _filter_types(documents: QuerySet[Document], values: list[str]) -> QuerySet[Document]:
    for value in values:
        kinds: set[str] = set()
        for token in value.split(","):
            system, bar, code = token.partition("|")
            code = code if bar else system
            if (bar and system not in ("", LOINC)) or code not in LOINC_KINDS:
                raise _search_error(
                    f"unsupported type {token[:60]!r}; Vigie keeps these LOINC codes: "
                    f"{', '.join(LOINC_KINDS)}",
                    "type",
                )
            kinds.add(LOINC_KINDS[code][0])
        documents = documents.filter(kind__in=kinds)
    return documents


_PREFIXES = ("eq", "ne", "ge", "le", "gt", "lt", "sa", "eb", "ap")


def _date_range(text: str) -> tuple[date, date]:
    """The first and last day a FHIR date value (YYYY, YYYY-MM, YYYY-MM-DD[Thh:mm...]) covers."""
    if len(text) == 4 and text.isdigit():
        return date(int(text), 1, 1), date(int(text), 12, 31)
    if len(text) == 7 and text[4] == "-":
        first = date.fromisoformat(f"{text}-01")
        following = date(first.year + first.month // 12, first.month % 12 + 1, 1)
        return first, following - timedelta(days=1)
    day = datetime.fromisoformat(text).date() if "T" in text else date.fromisoformat(text)
    return day, day


def _filter_dates(documents: QuerySet[Document], values: list[str]) -> QuerySet[Document]:
    # `date` searches the clinical date (context.period.start), the one the portal shows.
    for value in values:
        prefix = value[:2] if value[:2] in _PREFIXES else "eq"
        text = value[2:] if value[:2] in _PREFIXES else value
        try:
            first, last = _date_range(text)
        except ValueError:
            raise _search_error(f"{value[:40]!r} is not a FHIR date", "date") from None
        conditions = {
            "eq": Q(clinical_date__gte=first, clinical_date__lte=last),
            "ne": ~Q(clinical_date__gte=first, clinical_date__lte=last),
            "ge": Q(clinical_date__gte=first),
            "sa": Q(clinical_date__gt=last),
            "gt": Q(clinical_date__gt=last),
            "le": Q(clinical_date__lte=last),
            "eb": Q(clinical_date__lt=first),
            "lt": Q(clinical_date__lt=first),
        }
        if prefix not in conditions:
            raise _search_error(f"the date prefix {prefix!r} is not supported", "date")
        documents = documents.filter(conditions[prefix])
    return documents


@_fhir_view
def document_reference_read(request: HttpRequest, document_id: str) -> HttpResponse:
    refusal = _read_refusal(request)
    if refusal is not None:
        return refusal
    try:
        document, decision = document_in_scope_or_404(request, vigie_id(document_id), "view")
    except Http404:
        return not_found()
    record(
        "patient.view",
        request=request,
        patient=document.patient,
        document=document,
        extra={"basis": decision.reason, "channel": "fhir", "resource": "DocumentReference"},
    )
    return fhir_response(document_reference(document))


@_fhir_view
def binary_read(request: HttpRequest, document_id: str) -> HttpResponseBase:
    """The document's bytes in their own format (FHIR allows it for Binary), through the
    portal's one door: access decision, audit event committed, then decryption."""
    refusal = _read_refusal(request)
    if refusal is not None:
        return refusal
    try:
        return serve_document(request, vigie_id(document_id), "download")
    except Http404:
        return not_found()


@_fhir_view
def patient_read(request: HttpRequest, public_id: str) -> HttpResponse:
    refusal = _read_refusal(request)
    if refusal is not None:
        return refusal
    try:
        patient, decision = patient_in_scope_or_404(request, vigie_id(public_id), "view")
    except Http404:
        return not_found()
    record(
        "patient.view",
        request=request,
        patient=patient,
        extra={"basis": decision.reason, "channel": "fhir", "resource": "Patient"},
    )
    return fhir_response(patient_resource(patient))


@_fhir_view
def patient_type(request: HttpRequest) -> HttpResponse:
    """Patient search, bounded by the doctor's scope like the portal's search box (which
    is not audited either: it shows names of the doctor's own patients only)."""
    refusal = _read_refusal(request)
    if refusal is not None:
        return refusal
    _only(request, {"identifier", "name", "_count"})
    patients: QuerySet[Patient] = patients_in_scope(request.user)
    for name in request.GET.getlist("name"):
        patients = patients.filter(pk__in=search_patients(request.user, q=name).values("pk"))
    for value in request.GET.getlist("identifier"):
        patients = patients.filter(_identifier_condition(value))
    found = list(
        patients.order_by("family_name", "given_names", "birth_date")[
            : min(_count(request), SEARCH_LIMIT)
        ]
    )
    return fhir_response(search_bundle([patient_resource(p) for p in found], _base(request)))


def _identifier_condition(value: str) -> Q:
    system, bar, code = value.partition("|")
    code = code if bar else system
    if not code:
        raise _search_error("identifier=system|value needs a value", "identifier")
    if not bar:
        return Q(ins=code.replace(" ", "")) | Q(ipp=code)
    if system == INS_SYSTEM:
        return Q(ins=code.replace(" ", ""))
    if system and system == clinic_ipp_system():
        return Q(ipp=code)
    return Q(identifiers__source=system, identifiers__value=code)
