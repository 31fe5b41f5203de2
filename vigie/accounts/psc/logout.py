"""PSC's back-channel logout: the provider's signed logout token ends the local sessions.

OpenID Connect Back-Channel Logout 1.0: the provider POSTs `logout_token`, a JWT signed
with its keys, for this client, with the back-channel logout event, a `sid` (the PSC
session) or a `sub` (every session of that professional), and never a `nonce` (which would
make an ID token pass for one). Each local session a matching PSC sign-in opened is deleted
server-side, so its cookie is dead wherever it was copied.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.sessions.backends.base import SessionBase
from django.utils.module_loading import import_string

from vigie.accounts.psc.client import Refused, verify_jwt
from vigie.accounts.psc.models import PscSession

BACKCHANNEL_EVENT = "http://schemas.openid.net/event/backchannel-logout"
_MAX_TOKEN = 16 * 1024


def verify_logout_token(value: str) -> dict[str, Any]:
    """The claims of a valid logout token; raises Refused otherwise."""
    if not value or len(value) > _MAX_TOKEN:
        raise Refused("bad_logout_token", "missing or too long")
    claims = verify_jwt(value)
    events = claims.get("events")
    if not isinstance(events, dict) or BACKCHANNEL_EVENT not in events:
        raise Refused("bad_logout_token", "no back-channel logout event")
    if "nonce" in claims:
        raise Refused("bad_logout_token", "carries a nonce")
    if "iat" not in claims:
        raise Refused("bad_logout_token", "no iat")
    sid, sub = claims.get("sid"), claims.get("sub")
    if not (isinstance(sid, str) and sid) and not (isinstance(sub, str) and sub):
        raise Refused("bad_logout_token", "neither sid nor sub")
    return claims


def end_sessions(claims: dict[str, Any]) -> list[PscSession]:
    """Delete the local sessions the token names; the rows of those that were found."""
    every = PscSession.objects.select_related("user")
    sid, sub = claims.get("sid"), claims.get("sub")
    has_sub = isinstance(sub, str) and bool(sub)
    if isinstance(sid, str) and sid:
        rows = every.filter(sid=sid)
        if has_sub:
            rows = rows.filter(sub=sub)
        ended = list(rows)
        if not ended and has_sub:
            # Sessions whose ID token carried no sid cannot be told apart: all of this
            # professional's go (logging out too much is the safe side).
            ended = list(every.filter(sub=sub, sid=""))
    else:
        ended = list(every.filter(sub=sub))
    store: type[SessionBase] = import_string(f"{settings.SESSION_ENGINE}.SessionStore")
    for row in ended:
        store(session_key=row.session_key).delete()
    PscSession.objects.filter(pk__in=[r.pk for r in ended]).delete()
    return ended
