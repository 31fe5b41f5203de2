"""The decoys' tripwire: any touch of a decoy patient or document raises the alarm.

Decoys (made by `vigie.guard.decoys`) are in nobody's scope, so any touch of one is an
intrusion. A touch is caught on two paths, each cheap enough to run on every request or event:

* HTTP (`CanaryTripwireMiddleware` → `check_request`, placed before deny-by-default): the
  path's segments and the query string's values are looked up in an in-process set of decoy
  tokens (public ids, document ids, admin primary keys). This sees outsiders without a
  session, the incident's case: a leaked link fetched while the firewall was open.
* Audit (`on_event_recorded`, connected to `audit.log.event_recorded`): every path that
  touches a patient (portal refusals, break-the-glass, admin changes, intake, API) records
  an event naming the patient; an event naming a decoy trips.

Either way `trip()` raises a critical alert to IT and to the DPO naming the actor, address
and user agent, records `guard.canary.touched`, and counts the touch, synchronously (the
alert is stored before the response leaves). One request trips once. The response itself is
never changed: the outsider gets the same login page or 404 as for any other URL.
The guard's own outside-in probe signs each request (`probe_auth`: method, path and query,
30 s, a nonce spent on use); a valid signature is recorded as `guard.canary.probed`, without
an alarm. A replayed, expired or altered one trips like any outsider.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from django.contrib.admin.utils import unquote
from django.db import DatabaseError
from django.db.models import F
from django.http import HttpRequest, HttpResponse, QueryDict
from django.utils import timezone

from vigie.alerts.models import Audience, Severity
from vigie.alerts.services import raise_alert
from vigie.audit import tags
from vigie.audit.log import record, request_id
from vigie.audit.models import AuditEvent
from vigie.guard import probe_auth
from vigie.guard.models import Canary
from vigie.records.models import Document

logger = logging.getLogger(__name__)

# How stale the in-process token set may be. A decoy created by `vigie canary create` in
# another process is armed in every web worker within this delay; the refresh is 2 queries.
REFRESH_SECONDS = 2.0

ALERT_KIND = tags.CANARY_TOUCHED
ACTION_TOUCHED = tags.CANARY_TOUCHED
ACTION_PROBED = "guard.canary.probed"
_OWN_ACTIONS = "guard.canary."

# Set on request.META once a request has tripped (or was a signed probe): the middleware and
# the audit hook both see the same request, and one request is one alarm.
_REQUEST_MARK = "VIGIE_CANARY"
# Same, for events recorded without the request object but with its request id. The id is
# Vigie's own (`audit.log.request_id`), never the client's X-Request-ID: one value chosen by
# the client would otherwise mute every later touch, from any address.
_RECENT_REQUESTS = 1024


# --- the in-process index of decoy tokens --------------------------------------------------


@dataclass(frozen=True)
class _Snapshot:
    # Public ids and document ids: random, so a match in any path segment or query value
    # cannot be a coincidence.
    tokens: Mapping[str, int]
    documents: frozenset[str]
    # IPP and INS: matched in query values only (a search for exactly that identifier).
    identifiers: Mapping[str, int]
    # Patient primary keys: small integers, so matched only where the admin puts them
    # (/…/records/patient/<pk>/) and in audit events.
    patients: Mapping[int, int]
    loaded_at: float


_EMPTY = _Snapshot({}, frozenset(), {}, {}, float("-inf"))


@dataclass(frozen=True)
class Match:
    canary_id: int
    token: str
    document_id: str = ""


class DecoyIndex:
    """What identifies a decoy, refreshed from the database at most every REFRESH_SECONDS."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._snapshot = _EMPTY

    def invalidate(self) -> None:
        self._snapshot = _EMPTY

    def current(self) -> _Snapshot:
        snapshot = self._snapshot
        if time.monotonic() - snapshot.loaded_at < REFRESH_SECONDS:
            return snapshot
        with self._lock:
            snapshot = self._snapshot
            if time.monotonic() - snapshot.loaded_at < REFRESH_SECONDS:
                return snapshot  # another thread refreshed while we waited
            try:
                snapshot = _load()
            except DatabaseError:
                # A database hiccup must not take requests down; keep the last known decoys
                # and try again on the next request.
                logger.exception("could not refresh the decoy index")
                return self._snapshot
            self._snapshot = snapshot
            return snapshot

    def match_request(self, path: str, query_string: str) -> Match | None:
        snapshot = self.current()
        if not snapshot.patients:
            return None
        segments = [s for s in path.split("/") if s]
        for position, segment in enumerate(segments):
            found = _token_match(snapshot, segment)
            if found is not None:
                return found
            if (
                segment == "patient"
                and position >= 1
                and segments[position - 1] == "records"
                and position + 1 < len(segments)
            ):
                found = _patient_pk_match(snapshot, unquote(segments[position + 1]))
                if found is not None:
                    return found
        if query_string:
            for key, values in QueryDict(query_string).lists():
                for value in values:
                    found = _token_match(snapshot, value) or _identifier_match(snapshot, value)
                    if found is None and _names_a_patient(key):
                        found = _patient_pk_match(snapshot, value)
                    if found is None and "/" in value:
                        # A decoy link inside a link: the login page's ?next=/documents/…/,
                        # which is what a search engine indexes when it meets the login wall.
                        found = next(
                            filter(None, (_token_match(snapshot, s) for s in value.split("/"))),
                            None,
                        )
                    if found is not None:
                        return found
        return None

    def match_event(self, event: AuditEvent) -> Match | None:
        snapshot = self.current()
        if event.patient_id is not None and event.patient_id in snapshot.patients:
            return Match(snapshot.patients[event.patient_id], f"patient:{event.patient_id}")
        if event.document_id:
            return _token_match(snapshot, event.document_id)
        return None


def _load() -> _Snapshot:
    tokens: dict[str, int] = {}
    identifiers: dict[str, int] = {}
    patients: dict[int, int] = {}
    rows = Canary.objects.values_list(
        "pk", "patient_id", "patient__public_id", "patient__ipp", "patient__ins"
    )
    for canary_id, patient_id, public_id, ipp, ins in rows:
        patients[patient_id] = canary_id
        tokens[public_id] = canary_id
        identifiers[ipp] = canary_id
        if ins:
            identifiers[ins] = canary_id
    documents = Document.objects.filter(patient_id__in=list(patients)).values_list(
        "pk", "patient_id"
    )
    for document_id, patient_id in documents:
        tokens[document_id] = patients[patient_id]
    document_ids = frozenset(document_id for document_id, _patient in documents)
    return _Snapshot(tokens, document_ids, identifiers, patients, time.monotonic())


def _token_match(snapshot: _Snapshot, value: str) -> Match | None:
    given = value
    canary_id = snapshot.tokens.get(value)
    if canary_id is None and "_" in given:
        # The admin escapes "_" (and a few others) in the primary keys it puts in URLs.
        value = unquote(given)
        canary_id = snapshot.tokens.get(value)
    if canary_id is None and "." in given:
        # The FHIR form (`intake.fhir.resources.fhir_id`): "_" written as ".", which the
        # FHIR views turn back into "_" wholesale, so any mix of the two names the same
        # record. Vigie's ids never hold a ".", so this cannot match a different token.
        value = given.replace(".", "_")
        canary_id = snapshot.tokens.get(value)
    if canary_id is None:
        return None
    return Match(canary_id, value, document_id=value if value in snapshot.documents else "")


def _identifier_match(snapshot: _Snapshot, value: str) -> Match | None:
    canary_id = snapshot.identifiers.get(value.strip())
    return None if canary_id is None else Match(canary_id, value.strip())


def _patient_pk_match(snapshot: _Snapshot, value: str) -> Match | None:
    if not value.isdigit():
        return None
    canary_id = snapshot.patients.get(int(value))
    return None if canary_id is None else Match(canary_id, f"patient:{value}")


def _names_a_patient(key: str) -> bool:
    # The admin's filters and raw-id lookups: ?patient=…, ?patient__id__exact=…, ?patient_id=…
    return key.split("__")[0] in {"patient", "patient_id"}


decoys = DecoyIndex()


# --- a touch, and the alarm -----------------------------------------------------------------


@dataclass(frozen=True)
class Touch:
    """Who touched a decoy, from where, and how (`via`: "http" or the revealing audit action)."""

    actor: str
    address: str
    user_agent: str
    path: str
    via: str
    request_id: str = ""
    token: str = ""
    document_id: str = ""
    # "", or why a probe signature sent with the request was refused (probe_auth.Check).
    probe_header: str = ""


def _actor_of(request: HttpRequest) -> str:
    user = getattr(request, "user", None)
    if user is not None and user.is_authenticated:
        return str(user.get_username())
    return "anonymous"


def touch_from_request(request: HttpRequest, match: Match, *, via: str = "http") -> Touch:
    meta = request.META
    return Touch(
        actor=_actor_of(request),
        address=str(meta.get("REMOTE_ADDR") or ""),
        user_agent=str(meta.get("HTTP_USER_AGENT") or "")[:256],
        path=request.get_full_path()[:500],
        via=via,
        request_id=request_id(request),
        token=match.token,
        document_id=match.document_id,
    )


def touch_from_event(event: AuditEvent, match: Match) -> Touch:
    return Touch(
        # No actor and no address: a process of our own (a command, a task), not a visitor.
        actor=event.actor_username or ("anonymous" if event.source_ip else "system"),
        address=event.source_ip,
        user_agent=event.user_agent,
        path="",
        via=event.action,
        request_id=event.request_id,
        token=match.token,
        document_id=event.document_id or match.document_id,
    )


_recent_lock = threading.Lock()
_recent: OrderedDict[str, None] = OrderedDict()


def _claim(request: HttpRequest | None, request_id: str) -> bool:
    """True the first time a request asks; False for every later touch in the same request."""
    if request is not None:
        if request.META.get(_REQUEST_MARK):
            return False
        request.META[_REQUEST_MARK] = "touched"
    if request_id:
        with _recent_lock:
            if request_id in _recent:
                return False
            _recent[request_id] = None
            while len(_recent) > _RECENT_REQUESTS:
                _recent.popitem(last=False)
    return True


def trip(canary: Canary, touch: Touch, *, request: HttpRequest | None = None) -> None:
    """Alarm: critical alerts to IT and to the DPO, an audit event, the touch counted.

    Never raises: it runs in the middle of someone else's request, whose answer must not
    change (a decoy must not reveal itself by a 500).
    """
    # Stored data delivered to e-mail, webhook and syslog, in one language for every
    # channel: not translated with the language of whoever happened to trip it.
    where = f" at {touch.path}" if touch.path else f" via {touch.via}"
    summary = (
        f"Decoy touched: {canary} by {touch.actor} from {touch.address or 'unknown address'}"
        f" ({touch.user_agent or 'no user agent'}){where}"
    )
    details: dict[str, Any] = {
        "decoy": str(canary),
        "canary_id": canary.pk,
        "actor": touch.actor,
        "address": touch.address,
        "user_agent": touch.user_agent,
        "path": touch.path,
        "via": touch.via,
        "token": touch.token,
        "document_id": touch.document_id,
        "request_id": touch.request_id,
    }
    if touch.probe_header:
        details["probe_signature"] = touch.probe_header
    for audience in (Audience.ADMIN, Audience.AUDITOR):
        try:
            raise_alert(
                ALERT_KIND,
                severity=Severity.CRITICAL,
                summary=summary,
                details=details,
                # Repeats by the same actor from the same address count up one alert;
                # a new address or actor is a new alert.
                dedupe_key=f"{ALERT_KIND}:{canary.pk}:{audience}:{touch.actor}:{touch.address}",
                audience=audience,
            )
        except Exception:  # the other audience and the audit event must still happen
            logger.exception("could not raise the decoy alert for %s", audience)
    try:
        Canary.objects.filter(pk=canary.pk).update(
            touches=F("touches") + 1, last_touched_at=timezone.now()
        )
    except DatabaseError:
        logger.exception("could not count the touch of decoy %s", canary.pk)
    try:
        record(
            ACTION_TOUCHED,
            request=request,
            patient=canary.patient,
            document=_document(touch.document_id),
            outcome="denied",
            reason="decoy",
            extra={k: v for k, v in details.items() if k not in {"canary_id"}},
        )
    except Exception:  # the alerts are stored; an audit outage is alerted on its own
        logger.exception("could not record the touch of decoy %s", canary.pk)


def _document(document_id: str) -> Document | None:
    if not document_id:
        return None
    return Document.objects.filter(pk=document_id).select_related("patient").first()


def _touched(match: Match, touch: Touch, request: HttpRequest | None) -> None:
    if not _claim(request, touch.request_id):
        return
    canary = Canary.objects.select_related("patient").filter(pk=match.canary_id).first()
    if canary is None:
        return  # removed since the index was loaded
    signature = probe_auth.Check.MISSING
    if request is not None:
        # Checked (and its nonce spent) only here, once per request (_claim above): a
        # signature that touches no decoy mutes nothing and need not be spent.
        signature = probe_auth.verify_request(request)
    if signature == probe_auth.Check.VALID:
        assert request is not None  # noqa: S101 - no request, no signature
        request.META[_REQUEST_MARK] = "probed"
        try:
            record(
                ACTION_PROBED,
                request=request,
                patient=canary.patient,
                document=_document(touch.document_id),
                extra={"decoy": str(canary), "path": touch.path, "token": touch.token},
            )
        except Exception:  # the probe's request must be answered like any other
            logger.exception("could not record the probe of decoy %s", canary.pk)
        return
    if signature != probe_auth.Check.MISSING:
        # Refused, whatever the reason: an outsider's touch, the reason in the alert.
        touch = replace(touch, probe_header=signature.value)
    trip(canary, touch, request=request)


def check_request(request: HttpRequest) -> None:
    """The HTTP path: trip if the request's path or query string names a decoy."""
    match = decoys.match_request(request.path, request.META.get("QUERY_STRING", ""))
    if match is not None:
        _touched(match, touch_from_request(request, match), request)


def on_event_recorded(
    sender: object, *, event: AuditEvent, request: HttpRequest | None = None, **kwargs: Any
) -> None:
    """The audit path: trip when a durable event names a decoy patient or document."""
    if event.action.startswith(_OWN_ACTIONS):
        return  # our own events name the decoy on purpose
    match = decoys.match_event(event)
    if match is None:
        return
    if request is not None:
        touch = touch_from_request(request, match, via=event.action)
        if event.actor_username:
            # The event may name an actor the request's user does not (a login attempt).
            touch = replace(touch, actor=event.actor_username)
    else:
        touch = touch_from_event(event, match)
    _touched(match, touch, request)


# --- the middleware -------------------------------------------------------------------------


class CanaryTripwireMiddleware:
    """Every request's path and query string checked against the decoys, before the view.

    Placed before deny-by-default, so it sees outsiders without a session too. It only
    watches: the response is whatever the rest of the stack answers, so a decoy looks like
    any other URL.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        try:
            # Before the view: the alarm is stored even if the view then fails.
            check_request(request)
        except Exception:  # a tripwire fault must not answer differently (or 500) for decoys
            logger.exception("canary tripwire failed for %s", request.path)
        return self.get_response(request)
