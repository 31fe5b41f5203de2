"""Who Pro Santé Connect says signed in, and the one account that identity may open.

PSC's userinfo (scope `scope_all`) names the professional by `SubjectNameID`, the national
identifier: for a doctor the RPPS number, 11 digits, usually written with its type prefix
"8" (12 digits); an ADELI-registered professional has "0" and the ADELI number. Names come
as `given_name` and `family_name`; the professional situations as `SubjectRefPro.exercices`
(profession code, names of practice, and each activity's structure). The answer is JSON or,
when the client registered for it, a JWT signed like the ID token: both are read.

No account is ever created here: an identity that matches no active account is refused.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import requests

from vigie.accounts.models import User
from vigie.accounts.psc.client import Refused, client, metadata, verify_jwt

_RPPS_WITH_PREFIX = re.compile(r"8(\d{11})")
_RPPS = re.compile(r"\d{11}")
_MAX_TEXT = 200


@dataclass(frozen=True)
class Situation:
    """One professional situation (an "exercice" and its activities)."""

    profession: str
    family_name: str
    given_name: str
    structures: tuple[str, ...]


@dataclass(frozen=True)
class PscIdentity:
    sub: str
    national_id: str
    given_name: str
    family_name: str
    situations: tuple[Situation, ...] = field(default_factory=tuple)

    @property
    def rpps(self) -> str | None:
        """The RPPS number this identifier carries, or None (ADELI, test identities)."""
        found = _RPPS_WITH_PREFIX.fullmatch(self.national_id) or _RPPS.fullmatch(self.national_id)
        if found is None:
            return None
        return found.group(1) if found.re is _RPPS_WITH_PREFIX else found.group(0)

    def summary(self) -> dict[str, Any]:
        """What the audit keeps of it: the identifier, names, professions (no addresses)."""
        return {
            "psc_sub": self.sub[:_MAX_TEXT],
            "national_id": self.national_id,
            "name": f"{self.given_name} {self.family_name}".strip()[:_MAX_TEXT],
            "professions": sorted({s.profession for s in self.situations if s.profession}),
        }


def _text(value: Any) -> str:
    return value.strip()[:_MAX_TEXT] if isinstance(value, str) else ""


def _situations(userinfo: dict[str, Any]) -> tuple[Situation, ...]:
    ref = userinfo.get("SubjectRefPro")
    exercices = ref.get("exercices") if isinstance(ref, dict) else None
    if not isinstance(exercices, list):
        return ()
    found = []
    for exercice in exercices[:50]:
        if not isinstance(exercice, dict):
            continue
        activities = exercice.get("activities")
        structures = tuple(
            _text(a.get("raisonSocialeSite"))
            for a in (activities if isinstance(activities, list) else [])[:50]
            if isinstance(a, dict) and _text(a.get("raisonSocialeSite"))
        )
        found.append(
            Situation(
                profession=_text(exercice.get("codeProfession")),
                family_name=_text(exercice.get("nomDexercice")),
                given_name=_text(exercice.get("prenomDexercice")),
                structures=structures,
            )
        )
    return tuple(found)


def parse_userinfo(userinfo: Any, id_claims: dict[str, Any]) -> PscIdentity:
    """The identity a userinfo answer names, checked against the ID token it came with."""
    if not isinstance(userinfo, dict):
        raise Refused("bad_userinfo", "not an object")
    sub = userinfo.get("sub")
    # OpenID Connect core 5.3.2: a userinfo for another subject than the ID token's is to
    # be thrown away, whatever it says (a token substitution, or a provider mix-up).
    if not isinstance(sub, str) or sub != id_claims.get("sub"):
        raise Refused("userinfo_subject_mismatch")
    national_id = _text(userinfo.get("SubjectNameID"))
    if not national_id:
        raise Refused("bad_userinfo", "no SubjectNameID")
    # When the ID token names the professional too, both must name the same one.
    in_token = id_claims.get("SubjectNameID") or id_claims.get("preferred_username")
    if isinstance(in_token, str) and in_token.strip() and in_token.strip() != national_id:
        raise Refused("userinfo_subject_mismatch")
    return PscIdentity(
        sub=sub,
        national_id=national_id,
        given_name=_text(userinfo.get("given_name")),
        family_name=_text(userinfo.get("family_name")),
        situations=_situations(userinfo),
    )


def fetch_identity(token: dict[str, Any]) -> PscIdentity:
    """The userinfo answer for this token response, read and checked."""
    endpoint = metadata().get("userinfo_endpoint")
    if not endpoint:
        raise Refused("bad_metadata", "no userinfo_endpoint")
    try:
        response = client().get(endpoint, token=token)
    except requests.RequestException as exc:
        raise Refused("provider_unreachable", type(exc).__name__) from None
    if response.status_code != 200:
        raise Refused("userinfo_refused", str(response.status_code))
    content_type = response.headers.get("Content-Type", "").split(";")[0].strip().lower()
    if content_type == "application/jwt":
        userinfo: Any = verify_jwt(response.text.strip())
    else:
        try:
            userinfo = response.json()
        except ValueError:
            raise Refused("bad_userinfo", "not JSON") from None
    return parse_userinfo(userinfo, dict(token["userinfo"]))


def account_for(identity: PscIdentity) -> User | None:
    """The active account this identity opens, or None: matched on the RPPS number only."""
    rpps = identity.rpps
    if rpps is None:
        return None
    return User.objects.filter(rpps=rpps, is_active=True).first()
