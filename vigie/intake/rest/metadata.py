"""The `metadata` part of `POST /api/v1/documents`: its schema and its validation.

One pydantic model is both the validator and the JSON Schema published in the OpenAPI
document, so the two cannot drift apart. Validation is strict (a date is "YYYY-MM-DD", not a
timestamp; a number is not a string) and unknown fields are refused: a misspelt "INS" or
"birthdate" silently ignored would leave a document waiting for reconciliation, or worse,
let an integrator believe the patient was identified.

Field errors come back as RFC 6901 pointers with a translated message; the submitted value
is never echoed (it is patient data, and the sender already has it).
"""

from __future__ import annotations

import json
from datetime import date
from typing import Any, Literal

from django.utils.translation import gettext as _
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic_core import ErrorDetails

from vigie.intake.rest.problems import FieldError
from vigie.records.models import DocumentKind

# Generous for identifiers and a few names; anything bigger is not metadata.
MAX_METADATA_BYTES = 64 * 1024

_STRICT = ConfigDict(extra="forbid", strict=True, str_strip_whitespace=True)


class PatientMetadata(BaseModel):
    """Who the document is about. Matching is exact: INS, or IPP with its assigning system;
    names and birth date only help the administrator who reconciles."""

    model_config = ConfigDict(**_STRICT, title="Patient")

    ins: str | None = Field(
        default=None,
        max_length=32,
        description="INS (NIR, 15 characters with its control key).",
    )
    ipp: str | None = Field(default=None, max_length=64, description="Patient number (IPP).")
    ipp_source: str = Field(
        default="",
        max_length=100,
        description="The system that assigned `ipp`; empty for the clinic's own IPP.",
    )
    family_name: str = Field(default="", max_length=150)
    given_names: str = Field(default="", max_length=150)
    birth_date: date | None = None
    sex: Literal["F", "M", "U", ""] = ""


class DocumentMetadata(BaseModel):
    """What the document is; the source system is the API key's, never the request's."""

    model_config = ConfigDict(**_STRICT, title="Document")

    kind: DocumentKind
    title: str = Field(min_length=1, max_length=255)
    clinical_date: date = Field(description="Date of the examination or letter (YYYY-MM-DD).")
    author: str = Field(default="", max_length=255)
    content_type: str = Field(
        default="application/pdf",
        max_length=100,
        description="application/pdf, image/png or image/jpeg.",
    )


class Metadata(BaseModel):
    model_config = ConfigDict(**_STRICT, title="Metadata")

    patient: PatientMetadata
    document: DocumentMetadata


class MalformedMetadata(ValueError):
    """Not JSON at all: the detail says where the parser stopped."""


class InvalidMetadata(ValueError):
    def __init__(self, errors: list[FieldError]) -> None:
        super().__init__(f"{len(errors)} field error(s)")
        self.errors = errors


def parse(text: str | bytes) -> Metadata:
    """The validated metadata, or MalformedMetadata / InvalidMetadata saying what is wrong."""
    try:
        return Metadata.model_validate_json(text)
    except ValidationError as exc:
        details = exc.errors(include_input=False, include_url=False)
        if any(error["type"] == "json_invalid" for error in details):
            reason = next(e for e in details if e["type"] == "json_invalid")
            where = str((reason.get("ctx") or {}).get("error", ""))
            raise MalformedMetadata(
                _("the metadata part is not valid JSON (%(where)s)") % {"where": where}
            ) from None
        raise InvalidMetadata([_field_error(error) for error in details]) from None


def canonical(metadata: Metadata) -> bytes:
    """The same bytes for the same metadata, however it was spaced or ordered."""
    return json.dumps(
        metadata.model_dump(mode="json"), sort_keys=True, separators=(",", ":")
    ).encode()


def _pointer(location: tuple[int | str, ...]) -> str:
    parts = [str(part).replace("~", "~0").replace("/", "~1") for part in location]
    return "#/" + "/".join(parts) if parts else "#"


def _field_error(error: ErrorDetails) -> FieldError:
    return {"pointer": _pointer(tuple(error["loc"])), "detail": _message(error)}


def _message(error: ErrorDetails) -> str:
    kind = error["type"]
    context: dict[str, Any] = dict(error.get("ctx") or {})
    if kind == "missing":
        return _("this field is required")
    if kind == "extra_forbidden":
        return _("unknown field: check its spelling against the schema")
    if kind in {"string_type", "string_unicode"}:
        return _("must be a string")
    if kind == "string_too_short":
        return _("must not be empty")
    if kind == "string_too_long":
        return _("must be at most %(max)s characters") % {"max": context.get("max_length", "?")}
    if kind.startswith("date"):
        return _("must be a date written YYYY-MM-DD")
    if kind in {"enum", "literal_error"}:
        return _("must be one of: %(expected)s") % {"expected": context.get("expected", "")}
    if kind in {"model_type", "model_attributes_type", "dict_type"}:
        return _("must be a JSON object")
    return _("invalid value (%(reason)s)") % {"reason": error["msg"]}
