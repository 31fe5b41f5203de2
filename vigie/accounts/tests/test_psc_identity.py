"""Reading PSC's userinfo (no provider needed) and the RPPS number on accounts."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.exceptions import ValidationError
from django.test import Client
from hypothesis import given
from hypothesis import strategies as st

from vigie.accounts.models import Role, User
from vigie.accounts.psc.client import Refused
from vigie.accounts.psc.identity import account_for, parse_userinfo
from vigie.accounts.testing import log_in, make_user

SUB = "f:550dc1c8:810001234567"
USERINFO = {
    "sub": SUB,
    "SubjectNameID": "810001234567",
    "preferred_username": "810001234567",
    "given_name": "Claire",
    "family_name": "MARTIN",
    "SubjectRefPro": {
        "exercices": [
            {
                "codeProfession": "10",
                "nomDexercice": "MARTIN",
                "prenomDexercice": "Claire",
                "activities": [{"raisonSocialeSite": "CABINET DU PORT", "codePostal": "13002"}],
            }
        ]
    },
}
CLAIMS = {"sub": SUB, "preferred_username": "810001234567"}


def test_it_reads_the_identifier_names_and_situations() -> None:
    identity = parse_userinfo(USERINFO, CLAIMS)
    assert identity.national_id == "810001234567"
    assert identity.rpps == "10001234567"
    assert (identity.given_name, identity.family_name) == ("Claire", "MARTIN")
    (situation,) = identity.situations
    assert situation.profession == "10"
    assert situation.structures == ("CABINET DU PORT",)
    # The audit keeps who and which profession, never the practice's address.
    assert "13002" not in str(identity.summary())


@pytest.mark.parametrize(
    "national_id", ["010001234567", "ANS20231122132732", "8100012345", "9100012345678"]
)
def test_only_an_rpps_number_names_an_account(national_id: str) -> None:
    # ADELI ("0" prefix) and PSC's test identities carry no RPPS number: no account matches.
    info = {**USERINFO, "SubjectNameID": national_id, "preferred_username": national_id}
    assert parse_userinfo(info, {**CLAIMS, "preferred_username": national_id}).rpps is None


def test_attack_userinfo_of_another_subject() -> None:
    with pytest.raises(Refused) as refused:
        parse_userinfo({**USERINFO, "sub": "f:other"}, CLAIMS)
    assert refused.value.reason == "userinfo_subject_mismatch"


def test_attack_userinfo_naming_another_professional_for_the_same_subject() -> None:
    with pytest.raises(Refused) as refused:
        parse_userinfo({**USERINFO, "SubjectNameID": "810000000999"}, CLAIMS)
    assert refused.value.reason == "userinfo_subject_mismatch"


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=20,
)


@given(
    st.one_of(
        _json,
        st.fixed_dictionaries(
            {"sub": st.just(SUB)},
            optional={
                "SubjectNameID": _json,
                "given_name": _json,
                "family_name": _json,
                "SubjectRefPro": st.one_of(_json, st.fixed_dictionaries({"exercices": _json})),
            },
        ),
    )
)
def test_any_userinfo_is_read_or_refused_never_a_crash(userinfo: Any) -> None:
    reason = ""
    try:
        identity = parse_userinfo(userinfo, {"sub": SUB})
    except Refused as refused:
        reason = refused.reason
    else:
        assert identity.national_id
        assert isinstance(identity.summary()["professions"], list)
        return
    assert reason in {"bad_userinfo", "userinfo_subject_mismatch"}


@pytest.mark.django_db
def test_an_account_is_found_by_its_rpps_when_active_only() -> None:
    doctor = make_user("dr.martin", rpps="10001234567")
    identity = parse_userinfo(USERINFO, CLAIMS)
    assert account_for(identity) == doctor
    User.objects.filter(pk=doctor.pk).update(is_active=False)
    assert account_for(identity) is None


@pytest.mark.django_db
def test_rpps_numbers_are_eleven_digits_unique_and_blank_means_none() -> None:
    first = make_user("dr.a", rpps="")
    second = make_user("dr.b", rpps="  ")
    assert first.rpps is None
    assert second.rpps is None  # two accounts without a number do not clash
    bad = User(username="dr.c", role=Role.DOCTOR, rpps="1234", password="x")
    with pytest.raises(ValidationError) as short:
        bad.full_clean()
    assert list(short.value.message_dict) == ["rpps"]
    make_user("dr.d", rpps="10001234567")
    with pytest.raises(ValidationError) as taken:
        User(username="dr.e", role=Role.DOCTOR, rpps="10001234567", password="x").full_clean()
    assert list(taken.value.message_dict) == ["rpps"]


@pytest.mark.django_db
def test_the_admin_records_an_rpps_number(client: Client) -> None:
    admin = make_user("it.admin", role=Role.ADMIN)
    doctor = make_user("dr.martin")
    log_in(client, admin)
    page = client.get(f"/admin/accounts/user/{doctor.pk}/change/")
    assert page.status_code == 200
    assert b'name="rpps"' in page.content
    listing = client.get("/admin/accounts/user/?q=10001234567")
    assert listing.status_code == 200


@pytest.mark.django_db
def test_a_logout_token_ends_the_sessions_it_names() -> None:
    from django.contrib.sessions.backends.db import SessionStore

    from vigie.accounts.models import PscSession
    from vigie.accounts.psc.logout import end_sessions

    doctor, other = make_user("dr.a"), make_user("dr.b")

    def session(user: User, sid: str, sub: str) -> str:
        store = SessionStore()
        store["x"] = 1
        store.save()
        key = str(store.session_key)
        PscSession.objects.create(session_key=key, sid=sid, sub=sub, user=user)
        return key

    named = session(doctor, "sid-1", "sub-a")
    sibling = session(doctor, "sid-2", "sub-a")
    unknown_sid = session(doctor, "", "sub-a")
    stranger = session(other, "sid-1", "sub-b")  # same sid, another subject: untouched
    assert [r.session_key for r in end_sessions({"sid": "sid-1", "sub": "sub-a"})] == [named]
    assert not SessionStore().exists(named)
    assert all(SessionStore().exists(k) for k in (sibling, unknown_sid, stranger))
    # A sid we never learned: the subject's sessions without a sid end, no other.
    ended = end_sessions({"sid": "sid-9", "sub": "sub-a"})
    assert [r.session_key for r in ended] == [unknown_sid]
    assert SessionStore().exists(sibling)
    # No sid at all: every session of the subject.
    assert [r.session_key for r in end_sessions({"sub": "sub-a"})] == [sibling]
    assert SessionStore().exists(stranger)
