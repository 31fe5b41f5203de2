"""What every view of the FHIR endpoint shares, writes (intake) and reads (the portal's
FHIR reading channel) alike: failing closed in FHIR's own words, and the endpoint's base URL.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar, cast

from django.http import HttpRequest, HttpResponse, HttpResponseBase
from django.views.decorators.csrf import csrf_exempt

from vigie.accounts.deny_by_default import authenticates_itself
from vigie.audit.log import AuditUnavailable
from vigie.intake.fhir.outcomes import FhirError, error_response, outcome_response, unavailable
from vigie.records.access import LockedDown

# The logger the FHIR views have always used: log filters and alerts stay as they were.
logger = logging.getLogger("vigie.intake.fhir.views")

View = TypeVar("View", bound=Callable[..., HttpResponseBase])


def fhir_view(view: View) -> View:
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


def base_url(request: HttpRequest) -> str:
    return request.build_absolute_uri("/fhir/")


def method_not_allowed() -> HttpResponse:
    return outcome_response(405, "not-supported", "this method is not supported here")
