"""The FHIR reading channel: signed-in doctors read Patients, DocumentReferences and Binaries
within their scope, through the portal's own scope lookups and its one door (`door.serve_document`).

It answers on the FHIR endpoint, beside intake's writes, in the endpoint's dialect (resources,
OperationOutcome). Every view is `@authenticates_itself` (through `fhir_view`) so that its
refusals are OperationOutcomes, and each refuses on its own: reads take a verified session
(password + second factor) and nothing else; a request that presents an API key is refused
with 403, whatever else it carries.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime, timedelta
from functools import wraps
from typing import Any

from django.db.models import Q, QuerySet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBase

from vigie.accounts.deny_by_default import is_verified
from vigie.audit import refusals
from vigie.audit.log import record
from vigie.intake.apikeys import presented_key
from vigie.intake.fhir.endpoint import base_url, fhir_view, method_not_allowed
from vigie.intake.fhir.outcomes import (
    FhirError,
    fhir_response,
    not_found,
    outcome_response,
    unauthenticated,
)
from vigie.intake.fhir.resources import (
    INS_SYSTEM,
    LOINC,
    LOINC_KINDS,
    clinic_ipp_system,
    document_reference,
    patient_resource,
    search_bundle,
    vigie_id,
)
from vigie.intake.fhir.views import create_document_reference
from vigie.portal.door import serve_document
from vigie.portal.scope import document_in_scope_or_404, patient_in_scope_or_404
from vigie.portal.services import SEARCH_LIMIT, search_patients
from vigie.records.access import Decision, patients_in_scope
from vigie.records.models import Document, Patient

# Searches answer at most this many entries (no paging yet); the Bundle's total says so.
_MAX_RESULTS = 200


READ_REFUSED = "intake.fhir.read_refused"


def _reader_refusal(request: HttpRequest) -> HttpResponse | None:
    """None when a verified doctor session asks; else the OperationOutcome refusing it."""
    if presented_key(request) is not None:
        # A key is for ingest only: refused before it is even checked, so no key, valid
        # or stolen, turns into a way to read. Unchecked, it names nobody: counted per
        # source and minute like any anonymous refusal, and throttled the same way.
        wait = refusals.throttled(request, READ_REFUSED)
        if wait is not None:
            return _throttled(wait)
        refusals.refused(
            request, READ_REFUSED, "api_key", extra={"key": "", "path": request.path[:200]}
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
        return method_not_allowed()
    return None


def _throttled(wait: int) -> HttpResponse:
    return outcome_response(
        429,
        "throttled",
        "too many refused requests from this address: retry after Retry-After seconds",
        headers={"Retry-After": str(wait)},
    )


@fhir_view
def document_reference_type(request: HttpRequest) -> HttpResponse:
    if request.method == "POST":
        return create_document_reference(request)
    if request.method in ("GET", "HEAD"):
        return _search_documents(request)
    return method_not_allowed()


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
    return fhir_response(search_bundle([document_reference(d) for d in found], base_url(request)))


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


def _fhir_read(
    view: Callable[[HttpRequest, str], HttpResponseBase],
) -> Callable[..., HttpResponseBase]:
    """`fhir_view` for the read of one resource by id: `_read_refusal` first, the id in
    Vigie's spelling, and out of scope (404) answered as FHIR's not-found."""

    @wraps(view)
    def read(request: HttpRequest, **captured: str) -> HttpResponseBase:
        refusal = _read_refusal(request)
        if refusal is not None:
            return refusal
        (resource_id,) = captured.values()  # the one id of the route, whatever its name
        try:
            return view(request, vigie_id(resource_id))
        except Http404:
            return not_found()

    return fhir_view(read)


def _record_view(
    request: HttpRequest, patient: Patient, decision: Decision, resource: str, **document: Any
) -> None:
    extra = {"basis": decision.reason, "channel": "fhir", "resource": resource}
    record("patient.view", request=request, patient=patient, extra=extra, **document)


@_fhir_read
def document_reference_read(request: HttpRequest, document_id: str) -> HttpResponseBase:
    document, decision = document_in_scope_or_404(request, document_id, "view")
    _record_view(request, document.patient, decision, "DocumentReference", document=document)
    return fhir_response(document_reference(document))


@_fhir_read
def binary_read(request: HttpRequest, document_id: str) -> HttpResponseBase:
    """The document's bytes in their own format (FHIR allows it for Binary), through the
    portal's one door: access decision, audit event committed, then decryption."""
    return serve_document(request, document_id, "download")


@_fhir_read
def patient_read(request: HttpRequest, public_id: str) -> HttpResponseBase:
    patient, decision = patient_in_scope_or_404(request, public_id, "view")
    _record_view(request, patient, decision, "Patient")
    return fhir_response(patient_resource(patient))


@fhir_view
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
    return fhir_response(search_bundle([patient_resource(p) for p in found], base_url(request)))


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
