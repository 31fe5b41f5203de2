"""The hot folder's sidecar: the JSON file beside each PDF that says whose it is and what it is.

Its format, and why unknown keys are refused, is in docs/hot-folder.md. `parse_sidecar`
never trusts the sidecar's own word on where the document comes from: that is the folder's
`--source`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date
from typing import Any

from django.utils.translation import gettext as _

from vigie.records.ingest import DocumentMeta
from vigie.records.receive import Sender

SIDECAR_MAX_BYTES = 64 * 1024

_PATIENT_KEYS = frozenset(
    {"ins", "ipp", "ipp_source", "family_name", "given_names", "birth_date", "sex"}
)
_DOCUMENT_KEYS = frozenset({"kind", "title", "clinical_date", "author"})
_TOP_KEYS = frozenset({"patient", "document", "source_system"})


class SidecarError(ValueError):
    """The sidecar cannot be used; the message tells the sender what to fix."""


@dataclass(frozen=True)
class Sidecar:
    sender: Sender
    meta: DocumentMeta


def parse_sidecar(raw: bytes, *, source_system: str) -> Sidecar:
    """The patient and document a sidecar describes, or a SidecarError saying what is wrong.

    `source_system` is the folder's own (`--source`): the document's origin whatever the
    sidecar says, which may only repeat it."""
    if len(raw) > SIDECAR_MAX_BYTES:
        raise SidecarError(
            _("the sidecar is larger than %(limit)d bytes") % {"limit": SIDECAR_MAX_BYTES}
        )
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise SidecarError(
            _("the sidecar is not UTF-8 text (invalid byte at offset %(offset)d)")
            % {"offset": exc.start}
        ) from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SidecarError(
            _("the sidecar is not valid JSON: %(error)s at line %(line)d, column %(column)d")
            % {"error": exc.msg, "line": exc.lineno, "column": exc.colno}
        ) from None
    top = _object(data, "")
    patient = _object(top.get("patient"), "patient")
    document = _object(top.get("document"), "document")
    _only(top, _TOP_KEYS, "")
    _only(patient, _PATIENT_KEYS, "patient.")
    _only(document, _DOCUMENT_KEYS, "document.")
    missing = [
        "document." + key
        for key in ("kind", "title", "clinical_date")
        if document.get(key) in (None, "")
    ]
    if missing:
        raise SidecarError(
            _("missing required field(s): %(fields)s") % {"fields": ", ".join(missing)}
        )
    sender = Sender(
        ins=_text(patient, "ins", "patient.") or None,
        ipp=_text(patient, "ipp", "patient.") or None,
        ipp_source=_text(patient, "ipp_source", "patient."),
        family_name=_text(patient, "family_name", "patient."),
        given_names=_text(patient, "given_names", "patient."),
        birth_date=_date(patient, "birth_date", "patient.", required=False),
        sex=_text(patient, "sex", "patient."),
    )
    clinical_date = _date(document, "clinical_date", "document.", required=True)
    if clinical_date is None:  # unreachable: required=True raises instead
        raise SidecarError(_("the sidecar has no 'document.clinical_date' (required)"))
    meta = DocumentMeta(
        kind=_text(document, "kind", "document.", required=True),
        title=_text(document, "title", "document.", required=True),
        clinical_date=clinical_date,
        author=_text(document, "author", "document."),
        source_system=source_system,
    )
    claimed = _text(top, "source_system", "")
    if claimed and claimed.casefold() != source_system.strip().casefold():
        raise SidecarError(
            _("the sidecar says source_system %(claimed)r, but this folder receives for "
              "%(own)r only: nothing was stored")
            % {"claimed": claimed[:100], "own": source_system}
        )  # fmt: skip
    return Sidecar(sender=sender, meta=meta)


def _object(value: object, where: str) -> dict[str, Any]:
    if value is None and where:
        raise SidecarError(_("the sidecar has no %(field)r object") % {"field": where})
    if not isinstance(value, dict):
        if not where:
            raise SidecarError(_("the sidecar must be a JSON object"))
        raise SidecarError(_("%(field)r must be a JSON object") % {"field": where})
    return value


def _only(found: dict[str, Any], allowed: frozenset[str], prefix: str) -> None:
    unknown = sorted(set(found) - allowed)
    if unknown:
        raise SidecarError(
            _("unknown field(s) in the sidecar: %(fields)s (expected: %(allowed)s)")
            % {
                "fields": ", ".join(prefix + name for name in unknown),
                "allowed": ", ".join(prefix + name for name in sorted(allowed)),
            }
        )


def _text(found: dict[str, Any], key: str, prefix: str, *, required: bool = False) -> str:
    value = found.get(key)
    if value is None or value == "":
        if required:
            raise SidecarError(
                _("the sidecar has no %(field)r (required)") % {"field": prefix + key}
            )
        return ""
    if not isinstance(value, str):
        raise SidecarError(_("%(field)r must be a string") % {"field": prefix + key})
    return value.strip()


def _date(found: dict[str, Any], key: str, prefix: str, *, required: bool) -> date | None:
    value = _text(found, key, prefix, required=required)
    if not value:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise SidecarError(
            _("%(field)r must be a date written YYYY-MM-DD, not %(value)r")
            % {"field": prefix + key, "value": value}
        ) from None
