"""A session opened by Pro Santé Connect reads exactly what a password + TOTP session reads:
the care relationships decide, deny-by-default still guards every other route, and every
read is audited under the doctor's name."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from tests.psc.process import ProviderProcess
from tests.psc.test_psc_signin import CARD, RPPS, sign_in
from vigie.accounts.deny_by_default import PUBLIC_VIEWS
from vigie.accounts.models import Role, User
from vigie.accounts.testing import make_user
from vigie.audit.models import AuditEvent
from vigie.portal.testing import relate
from vigie.portal.tests.test_deny_by_default import ROUTES, _refused
from vigie.records.testing import make_document, make_patient

pytestmark = pytest.mark.django_db


@pytest.fixture
def doctor() -> User:
    return make_user("dr.martin", role=Role.DOCTOR, enrolled=False, rpps=RPPS)


def test_a_psc_session_reads_its_patients_and_nothing_else(
    provider: ProviderProcess, doctor: User
) -> None:
    mine, theirs = make_patient("MIENNE"), make_patient("AUTRE")
    my_document = make_document(mine, b"%PDF-1.4 mine")
    their_document = make_document(theirs, b"%PDF-1.4 theirs")
    relate(doctor, mine)
    relate(make_user("dr.other", role=Role.DOCTOR), theirs)
    client = Client()
    assert sign_in(client, provider, national_id=CARD).status_code == 302

    assert client.get(reverse("portal:patient_detail", args=[mine.public_id])).status_code == 200
    content = client.get(reverse("portal:document_content", args=[my_document.pk]))
    assert b"".join(content.streaming_content) == b"%PDF-1.4 mine"  # type: ignore[attr-defined]
    assert AuditEvent.objects.filter(
        action="document.read", actor_id=doctor.pk, document_id=str(my_document.pk)
    ).exists()
    for url in (
        reverse("portal:patient_detail", args=[theirs.public_id]),
        reverse("portal:document_content", args=[their_document.pk]),
        reverse("portal:document_download", args=[their_document.pk]),
    ):
        assert client.get(url).status_code == 404, url


def test_with_psc_enabled_an_outsider_is_still_refused_everywhere_else() -> None:
    outsider = Client()
    leaks = []
    for route in ROUTES:
        if route.view_name in PUBLIC_VIEWS:
            continue
        for method in ("get", "post"):
            response = getattr(outsider, method)(route.path)
            if not _refused(response):
                leaks.append((method, route.path, response.status_code))
    assert not leaks
    # The PSC routes themselves give an outsider nothing: no session, no page of the portal.
    assert outsider.get("/accounts/psc/callback/?code=x&state=y&continue=1").status_code == 400
    assert outsider.post("/accounts/psc/backchannel-logout/").status_code == 400
    assert "_auth_user_id" not in outsider.session
