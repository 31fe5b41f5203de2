"""FHIR R4 resources in and out: what a received DocumentReference means for `receive()`,
and how Vigie's rows look as DocumentReference, Patient and CapabilityStatement.

Validation uses fhir.resources' R4B models (4.3.0): for the resources served here they are
field for field the R4 (4.0.1) ones, and they are the maintained, pydantic v2 line. A few
checks are Vigie's own because the models are lenient where a sender's mistake would cost
a document: base64 is decoded strictly (the models turn "!!!" into zero bytes), the status
must be `current`, there is exactly one attachment, and every reference must resolve.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any
from urllib.parse import parse_qsl

from django.conf import settings

from vigie.intake.fhir.outcomes import FhirError, Issue
from vigie.records.models import Document, DocumentKind, Patient
from vigie.records.receive import Sender

FHIR_VERSION = "4.0.1"
INS_SYSTEM = "urn:oid:1.2.250.1.213.1.4.8"
LOINC = "http://loinc.org"
IPP_TYPE_SYSTEM = "http://terminology.hl7.org/CodeSystem/v2-0203"

# LOINC document type → Vigie's kind, with the display used when the sender gives no title.
LOINC_KINDS: dict[str, tuple[str, str]] = {
    "11502-2": (DocumentKind.LAB_RESULT, "Laboratory report"),
    "18748-4": (DocumentKind.IMAGING_REPORT, "Diagnostic imaging study"),
    "11488-4": (DocumentKind.CONSULTATION_LETTER, "Consult note"),
    "18842-5": (DocumentKind.DISCHARGE_SUMMARY, "Discharge summary"),
    "57833-6": (DocumentKind.PRESCRIPTION, "Prescription for medication"),
}
KIND_LOINC: dict[str, str] = {kind: code for code, (kind, _) in LOINC_KINDS.items()}
_GENDERS = {"female": "F", "male": "M"}
_SEXES = {"F": "female", "M": "male", "U": "unknown"}
_MAX_ISSUES = 20
_B64_WHITESPACE = re.compile(rb"\s+")


def fhir_id(vigie_id: str) -> str:
    """Vigie's ids are URL-safe base64 ("_" included); FHIR ids allow [A-Za-z0-9-.] only.

    "." never occurs in Vigie's ids, so swapping it for "_" is a bijection.
    """
    return vigie_id.replace("_", ".")


def vigie_id(resource_id: str) -> str:
    return resource_id.replace(".", "_")


def clinic_ipp_system() -> str:
    """The identifier system of this clinic's own IPP (Patient.ipp), if configured.

    Without it, an IPP is matched only with the system that assigned it: an identifier
    with no system could be any lab's number, and matching it against the clinic's IPPs
    could attach a document to the wrong patient.
    """
    return str(getattr(settings, "VIGIE_FHIR_IPP_SYSTEM", "") or "")


@dataclass(frozen=True)
class Submission:
    """A received DocumentReference, checked and reduced to what `receive()` needs."""

    sender: Sender
    kind: str
    title: str
    clinical_date: date
    author: str
    content_type: str
    data: bytes
    warnings: list[str] = field(default_factory=list)
    # Every identifier system the subject names besides the INS and the clinic's own IPP:
    # each must be the sending key's own source system.
    ipp_systems: tuple[str, ...] = ()


def _invalid(
    diagnostics: str, expression: str = "", *, status: int = 422, code: str = "invariant"
) -> FhirError:
    return FhirError.one(status, code, diagnostics, expression=[expression] if expression else [])


def _path(loc: Sequence[int | str]) -> str:
    path = "DocumentReference"
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    return path


def _strict_base64(value: Any, where: str) -> bytes:
    if not isinstance(value, str):
        raise _invalid("base64Binary data must be a string", where, status=400, code="structure")
    try:
        # FHIR allows whitespace inside base64Binary; anything else must be the alphabet.
        return base64.b64decode(_B64_WHITESPACE.sub(b"", value.encode("ascii")), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        raise _invalid(
            "attachment data is not valid base64", where, status=400, code="value"
        ) from None


def _validate_model(payload: Mapping[str, Any]) -> Any:
    # Imported on first use: building fhir.resources' pydantic models was a quarter of a
    # granian worker's start (issue 19: cold start), paid by every read-only start.
    from fhir.resources.R4B.documentreference import DocumentReference
    from pydantic import ValidationError

    try:
        return DocumentReference.model_validate(payload)
    except ValidationError as exc:
        issues = [
            Issue("structure", f"{error['msg']}", expression=[_path(error["loc"])])
            for error in exc.errors(include_url=False)[:_MAX_ISSUES]
        ]
        raise FhirError(400, issues) from None
    except (ValueError, TypeError, AttributeError, RecursionError) as exc:
        # The models' own validators raise these on some shapes pydantic lets through (a
        # boolean where a URL is expected raises AttributeError: found by fuzzing).
        raise _invalid(
            f"the DocumentReference is not valid FHIR R4: {exc}", status=400, code="structure"
        ) from None


def _contained(payload: Mapping[str, Any], resource_type: str) -> dict[str, Mapping[str, Any]]:
    found: dict[str, Mapping[str, Any]] = {}
    for item in payload.get("contained") or []:
        if isinstance(item, Mapping) and item.get("resourceType") == resource_type:
            found[f"#{item.get('id', '')}"] = item
    return found


def parse_document_reference(
    payload: Any,
    *,
    bundled_binaries: Mapping[str, Mapping[str, Any]] | None = None,
    bundled_patients: Mapping[str, Mapping[str, Any]] | None = None,
) -> Submission:
    """Check a received DocumentReference (parsed JSON) and say what it asks to store.

    Raises FhirError: 400 when it is not a valid DocumentReference, 422 when it is valid
    FHIR that Vigie cannot act on (a dangling reference, no attachment, no date...).
    `bundled_*` are the Binary and Patient entries of the same transaction Bundle, by
    fullUrl and by `Type/id`.
    """
    if not isinstance(payload, dict):
        raise _invalid(
            "the body must be a JSON object: a FHIR DocumentReference", status=400, code="structure"
        )
    resource_type = payload.get("resourceType")
    if resource_type != "DocumentReference":
        raise _invalid(
            f"expected resourceType DocumentReference, got {str(resource_type)[:40]!r}",
            "resourceType",
            status=400,
            code="not-supported",
        )
    raw_content = payload.get("content")
    if isinstance(raw_content, list):
        for index, item in enumerate(raw_content):
            attachment = item.get("attachment") if isinstance(item, dict) else None
            if isinstance(attachment, dict) and "data" in attachment:
                _strict_base64(
                    attachment["data"], f"DocumentReference.content[{index}].attachment.data"
                )
    resource = _validate_model(payload)
    if resource.status != "current":
        raise _invalid(
            f"status must be 'current' (got {str(resource.status)[:40]!r}): Vigie stores "
            "documents; it does not supersede or retract them over FHIR",
            "DocumentReference.status",
        )
    if len(resource.content) != 1:
        raise _invalid(
            "send exactly one content.attachment per DocumentReference (one document each), "
            "so that none is dropped silently",
            "DocumentReference.content",
        )
    data, content_type = _attachment_bytes(payload, resource, bundled_binaries or {})
    kind, default_title = _kind(resource)
    title = (resource.description or "").strip() or default_title
    sender, ipp_systems = _sender(payload, resource, bundled_patients or {})
    return Submission(
        sender=sender,
        ipp_systems=ipp_systems,
        kind=kind,
        title=title[:255],
        clinical_date=_clinical_date(resource),
        author=_author(payload, resource),
        content_type=content_type,
        data=data,
    )


def _attachment_bytes(
    payload: Mapping[str, Any], resource: Any, bundled: Mapping[str, Mapping[str, Any]]
) -> tuple[bytes, str]:
    where = "DocumentReference.content[0].attachment"
    attachment = resource.content[0].attachment
    raw = payload["content"][0].get("attachment")
    # The models accept a null attachment although R4 requires one (found by fuzzing).
    if attachment is None or not isinstance(raw, dict):
        raise _invalid("content[0].attachment is required (the document itself)", where)
    content_type = (attachment.contentType or "").strip()
    if "data" in raw and attachment.url:
        raise _invalid("give the attachment's data or its url, not both", where)
    if "data" in raw:
        data = _strict_base64(raw["data"], f"{where}.data")
    elif attachment.url:
        binary = _resolve_binary(str(attachment.url), payload, bundled, f"{where}.url")
        data = _strict_base64(binary.get("data"), f"{where}.url")
        content_type = content_type or str(binary.get("contentType") or "").strip()
    else:
        raise _invalid(
            "the attachment has neither data (base64) nor a url to a Binary", f"{where}.data"
        )
    if not content_type:
        raise _invalid("the attachment's contentType is missing", f"{where}.contentType")
    if attachment.size is not None and int(attachment.size) != len(data):
        raise _invalid(
            f"the attachment says size {attachment.size} but its data has {len(data)} bytes: "
            "the transfer was probably cut",
            f"{where}.size",
        )
    # R4: attachment.hash is the base64 SHA-1 of the data.
    sha1 = hashlib.sha1(data, usedforsecurity=False).digest()
    if attachment.hash is not None and bytes(attachment.hash) != sha1:
        raise _invalid("the attachment's hash (SHA-1) does not match its data", f"{where}.hash")
    return data, content_type


def _resolve_binary(
    url: str, payload: Mapping[str, Any], bundled: Mapping[str, Mapping[str, Any]], where: str
) -> Mapping[str, Any]:
    if url.startswith("#"):
        binary = _contained(payload, "Binary").get(url)
        if binary is None:
            raise _invalid(
                f"dangling reference {url[:80]!r}: no contained Binary has this id", where
            )
        return binary
    if url.startswith(("Binary/", "urn:uuid:")):
        binary = bundled.get(url)
        if binary is None:
            raise _invalid(
                f"dangling reference {url[:80]!r}: no Binary with this id was sent with it "
                "(send the data inline, or the Binary in the same transaction Bundle)",
                where,
            )
        return binary
    # Fetching a URL a sender names would let any key holder make Vigie call arbitrary
    # hosts (server-side request forgery); documents are pushed, never pulled.
    raise _invalid(
        f"Vigie does not fetch attachments from {url[:80]!r}: send the data inline (base64) "
        "or as a Binary in the same transaction Bundle",
        where,
    )


def _kind(resource: Any) -> tuple[str, str]:
    concept = resource.type
    if concept is None:
        return DocumentKind.OTHER, "Document"
    for coding in concept.coding or []:
        if coding.system == LOINC and coding.code in LOINC_KINDS:
            kind, display = LOINC_KINDS[coding.code]
            return kind, concept.text or coding.display or display
    texts = [concept.text, *[coding.display for coding in concept.coding or []]]
    return DocumentKind.OTHER, next((text for text in texts if text), "Document")


def _clinical_date(resource: Any) -> date:
    context = resource.context
    start = context.period.start if context is not None and context.period is not None else None
    for value, where in (
        (start, "DocumentReference.context.period.start"),
        (resource.date, "DocumentReference.date"),
    ):
        if value is None:
            continue
        if isinstance(value, datetime):
            # The date as the sender states it, in its own offset: the day of the exam.
            return value.date()
        if isinstance(value, date):
            return value
        raise _invalid(f"{value!s:.40} is not a full date: Vigie places documents on a day", where)
    raise _invalid(
        "say when: context.period.start (the clinical date) or date",
        "DocumentReference.context.period.start",
    )


def _author(payload: Mapping[str, Any], resource: Any) -> str:
    contained = {**_contained(payload, "Practitioner"), **_contained(payload, "Organization")}
    names: list[str] = []
    for index, author in enumerate(resource.author or []):
        reference = str(author.reference or "")
        if reference.startswith("#") and reference not in contained:
            raise _invalid(
                f"dangling reference {reference[:80]!r}: no contained "
                "Practitioner or Organization has this id",
                f"DocumentReference.author[{index}].reference",
            )
        if author.display:
            names.append(str(author.display).strip())
    return ", ".join(name for name in names if name)[:255]


def _sender(
    payload: Mapping[str, Any], resource: Any, bundled: Mapping[str, Mapping[str, Any]]
) -> tuple[Sender, tuple[str, ...]]:
    where = "DocumentReference.subject"
    subject = resource.subject
    if subject is None:
        raise _invalid(
            "the subject (the patient) is missing: give subject.identifier (INS or IPP with "
            "its system), a contained Patient, or Patient?identifier=system|value",
            where,
        )
    identifiers: list[tuple[str, str]] = []
    patient: Mapping[str, Any] | None = None
    if subject.identifier is not None:
        identifiers.append((subject.identifier.system or "", subject.identifier.value or ""))
    reference = str(subject.reference or "")
    if reference.startswith("#"):
        patient = _contained(payload, "Patient").get(reference)
        if patient is None:
            raise _invalid(
                f"dangling reference {reference[:80]!r}: no contained Patient has this id",
                f"{where}.reference",
            )
    elif reference.startswith("Patient?"):
        identifiers.extend(_conditional_identifiers(reference, f"{where}.reference"))
    elif reference:
        patient = bundled.get(reference)
        if patient is None:
            # Vigie never resolves a patient id a system sends (that would tell a key
            # holder which ids exist): only identifiers designate a patient.
            raise _invalid(
                f"dangling reference {reference[:80]!r}: Vigie resolves no Patient id; "
                "identify the patient by subject.identifier, a contained Patient or "
                "Patient?identifier=system|value",
                f"{where}.reference",
            )
    demographics: dict[str, Any] = {}
    if patient is not None:
        identifiers.extend(
            (str(item.get("system") or ""), str(item.get("value") or ""))
            for item in patient.get("identifier") or []
            if isinstance(item, Mapping)
        )
        demographics = _demographics(patient)
    return _sender_from(identifiers, demographics, where), _ipp_systems(identifiers)


def _ipp_systems(identifiers: list[tuple[str, str]]) -> tuple[str, ...]:
    own = clinic_ipp_system()
    return tuple(
        sorted(
            {
                system
                for system, value in identifiers
                if value.strip() and system not in ("", INS_SYSTEM) and system != own
            }
        )
    )


def _conditional_identifiers(reference: str, where: str) -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    for name, value in parse_qsl(reference.partition("?")[2], keep_blank_values=True):
        if name != "identifier":
            raise _invalid(
                f"only Patient?identifier=system|value is understood here, not {name[:40]!r}",
                where,
            )
        system, bar, code = value.partition("|")
        found.append((system, code) if bar else ("", value))
    return found


def _sender_from(
    identifiers: list[tuple[str, str]], demographics: dict[str, Any], where: str
) -> Sender:
    ins: set[str] = set()
    ipps: list[tuple[str, str]] = []
    for system, value in identifiers:
        value = value.strip()
        if not value:
            continue
        if not system:
            raise _invalid(
                f"the identifier {value[:40]!r} has no system: Vigie matches an IPP only with "
                f"the system that assigned it (the INS has system {INS_SYSTEM})",
                where,
            )
        if system == INS_SYSTEM:
            ins.add(value.replace(" ", ""))
        else:
            ipps.append((system, value))
    if len(ins) > 1:
        raise _invalid("the subject carries two different INS", where)
    own = clinic_ipp_system()
    # One IPP is matched; the first one is the sender's own patient number by convention.
    ipp_source, ipp = ipps[0] if ipps else ("", "")
    return Sender(
        ins=next(iter(ins), None),
        ipp=ipp or None,
        ipp_source="" if own and ipp_source == own else ipp_source,
        **demographics,
    )


def _demographics(patient: Mapping[str, Any]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    names = patient.get("name") or []
    first = names[0] if isinstance(names, list) and names and isinstance(names[0], Mapping) else {}
    if first.get("family"):
        found["family_name"] = str(first["family"])[:150]
    given = first.get("given") or []
    if isinstance(given, list) and given:
        found["given_names"] = " ".join(str(name) for name in given)[:150]
    born = patient.get("birthDate")
    if isinstance(born, str):
        # A partial birth date ("1985") is dropped: it only helps a human, who sees names.
        with contextlib.suppress(ValueError):
            found["birth_date"] = date.fromisoformat(born)
    gender = patient.get("gender")
    if isinstance(gender, str):
        found["sex"] = _GENDERS.get(gender, "U")
    return found


def document_reference(document: Document) -> dict[str, Any]:
    """A stored document as a doctor's client sees it; the bytes are at Binary/<id>."""
    code = KIND_LOINC.get(document.kind)
    concept: dict[str, Any] = {"text": document.get_kind_display()}
    if code is not None:
        concept["coding"] = [{"system": LOINC, "code": code, "display": LOINC_KINDS[code][1]}]
    resource: dict[str, Any] = {
        "resourceType": "DocumentReference",
        "id": fhir_id(document.pk),
        "meta": {"lastUpdated": document.received_at.isoformat()},
        "status": "current",
        "type": concept,
        "subject": {
            "reference": f"Patient/{fhir_id(document.patient.public_id)}",
            "display": f"{document.patient.family_name} {document.patient.given_names}",
        },
        "date": document.received_at.isoformat(),
        "description": document.title,
        "content": [
            {
                "attachment": {
                    "contentType": document.content_type,
                    "url": f"Binary/{fhir_id(document.pk)}",
                    "size": document.size,
                    "title": document.title,
                }
            }
        ],
        "context": {"period": {"start": document.clinical_date.isoformat()}},
    }
    if document.author:
        resource["author"] = [{"display": document.author}]
    return resource


def patient_resource(patient: Patient) -> dict[str, Any]:
    identifiers: list[dict[str, Any]] = []
    if patient.ins:
        identifiers.append({"system": INS_SYSTEM, "value": patient.ins})
    ipp: dict[str, Any] = {
        "type": {"coding": [{"system": IPP_TYPE_SYSTEM, "code": "PI"}]},
        "value": patient.ipp,
    }
    if clinic_ipp_system():
        ipp["system"] = clinic_ipp_system()
    identifiers.append(ipp)
    return {
        "resourceType": "Patient",
        "id": fhir_id(patient.public_id),
        "identifier": identifiers,
        "name": [{"family": patient.family_name, "given": patient.given_names.split()}],
        "gender": _SEXES.get(patient.sex, "unknown"),
        "birthDate": patient.birth_date.isoformat(),
    }


def search_bundle(resources: list[dict[str, Any]], base: str) -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": len(resources),
        "entry": [
            {
                "fullUrl": f"{base}{resource['resourceType']}/{resource['id']}",
                "resource": resource,
                "search": {"mode": "match"},
            }
            for resource in resources
        ],
    }


def capability_statement(base: str, published: datetime) -> dict[str, Any]:
    """What this server does, honestly: JSON only, these interactions and parameters only."""
    string = "string"
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": published.isoformat(),
        "publisher": "Vigie",
        "kind": "instance",
        "software": {"name": "Vigie"},
        "implementation": {"description": "Vigie FHIR R4 endpoint", "url": base},
        "fhirVersion": FHIR_VERSION,
        "format": ["application/fhir+json", "json"],
        "rest": [
            {
                "mode": "server",
                "documentation": (
                    "Create: an API key (Authorization: Bearer). Reads: a signed-in, "
                    "second-factor-verified doctor session, within the doctor's patients."
                ),
                "security": {
                    "description": "API keys create only; they never read.",
                },
                "resource": [
                    {
                        "type": "DocumentReference",
                        "interaction": [
                            {"code": "create"},
                            {"code": "read"},
                            {"code": "search-type"},
                        ],
                        "searchParam": [
                            {"name": "patient", "type": "reference"},
                            {"name": "type", "type": "token"},
                            {"name": "date", "type": "date"},
                        ],
                    },
                    {"type": "Binary", "interaction": [{"code": "read"}]},
                    {
                        "type": "Patient",
                        "interaction": [{"code": "read"}, {"code": "search-type"}],
                        "searchParam": [
                            {"name": "identifier", "type": "token"},
                            {"name": "name", "type": string},
                        ],
                    },
                ],
                "interaction": [{"code": "transaction"}],
            }
        ],
    }
