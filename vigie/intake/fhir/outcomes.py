"""FHIR answers: every error is an OperationOutcome, every body is application/fhir+json.

The diagnostics stay in English on purpose: they are read by a lab's or a hospital's
integrator in their logs (like HTTP reason phrases and HL7 ERR segments), not shown to a
physician in the portal, so they do not go through gettext.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from django.http import HttpResponse

FHIR_JSON = "application/fhir+json; charset=utf-8"
# Seconds a sender should wait before retrying after a 503 (storage or audit unavailable).
RETRY_AFTER_SECONDS = 60


@dataclass(frozen=True)
class Issue:
    """One OperationOutcome.issue; `code` is from the FHIR issue-type value set."""

    code: str
    diagnostics: str
    severity: str = "error"
    expression: Sequence[str] = ()


@dataclass
class FhirError(Exception):
    """A refusal that the view turns into an OperationOutcome with this HTTP status."""

    status: int
    issues: list[Issue] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def one(
        cls,
        status: int,
        code: str,
        diagnostics: str,
        *,
        expression: Sequence[str] = (),
        headers: dict[str, str] | None = None,
    ) -> FhirError:
        return cls(status, [Issue(code, diagnostics, expression=expression)], headers or {})

    def __str__(self) -> str:
        return "; ".join(issue.diagnostics for issue in self.issues)


def operation_outcome(issues: Sequence[Issue]) -> dict[str, Any]:
    body: list[dict[str, Any]] = []
    for issue in issues:
        entry: dict[str, Any] = {
            "severity": issue.severity,
            "code": issue.code,
            "diagnostics": issue.diagnostics,
        }
        if issue.expression:
            entry["expression"] = list(issue.expression)
        body.append(entry)
    return {"resourceType": "OperationOutcome", "issue": body}


def fhir_response(
    resource: dict[str, Any], status: int = 200, headers: dict[str, str] | None = None
) -> HttpResponse:
    response = HttpResponse(
        json.dumps(resource, ensure_ascii=False, separators=(",", ":")),
        status=status,
        content_type=FHIR_JSON,
    )
    # Patient data (and even a refusal) must not linger in a shared cache or a proxy.
    response["Cache-Control"] = "no-store"
    response["X-Content-Type-Options"] = "nosniff"
    for name, value in (headers or {}).items():
        response[name] = value
    return response


def error_response(error: FhirError) -> HttpResponse:
    return fhir_response(operation_outcome(error.issues), error.status, error.headers)


def outcome_response(
    status: int, code: str, diagnostics: str, *, headers: dict[str, str] | None = None
) -> HttpResponse:
    return error_response(FhirError.one(status, code, diagnostics, headers=headers))


def unauthenticated() -> HttpResponse:
    return outcome_response(
        401,
        "login",
        "sign in to Vigie (password and second factor) to read; "
        "send an API key in an Authorization: Bearer header to create documents",
        headers={"WWW-Authenticate": 'Bearer realm="vigie"'},
    )


def not_found() -> HttpResponse:
    # The same words for an unknown id and an out-of-scope one: a refusal never confirms
    # that a record exists.
    return outcome_response(404, "not-found", "no such resource")


def unavailable(reason: str) -> HttpResponse:
    return outcome_response(
        503, "transient", reason, headers={"Retry-After": str(RETRY_AFTER_SECONDS)}
    )
