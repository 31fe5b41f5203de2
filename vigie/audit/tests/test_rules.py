from __future__ import annotations

from datetime import datetime
from unittest import mock

import pytest
from django.utils import timezone

from vigie.accounts.models import Role, User
from vigie.alerts.models import Alert
from vigie.audit import tags
from vigie.audit.log import record
from vigie.audit.models import AuditEvent
from vigie.audit.rules import Thresholds, scan
from vigie.records.models import Patient
from vigie.records.testing import make_patient

pytestmark = pytest.mark.django_db


@pytest.fixture
def doctor() -> User:
    return User.objects.create_user(username="dr.curious", role=Role.DOCTOR)


def _patients(n: int) -> list[Patient]:
    return [make_patient() for _ in range(n)]


def test_browsing_many_patients_raises_one_alert_with_a_count(doctor: User) -> None:
    for patient in _patients(5):
        record("document.read", actor=doctor, patient=patient)
    last = scan(0, Thresholds(patients=5))
    alert = Alert.objects.get(kind="access.many_patients")
    assert "dr.curious" in alert.summary
    assert "5 patients" in alert.summary
    assert scan(last, Thresholds(patients=5)) == last  # nothing new, nothing raised
    assert Alert.objects.count() == 1


def test_reading_a_few_records_raises_nothing(doctor: User) -> None:
    for patient in _patients(3):
        record("document.read", actor=doctor, patient=patient)
    scan(0, Thresholds(patients=5))
    assert not Alert.objects.exists()


def test_crawler_like_reading_is_critical(doctor: User) -> None:
    patient = make_patient()
    for _ in range(12):
        record("document.read", actor=doctor, patient=patient)
    scan(0, Thresholds(reads_per_minute=10))
    assert Alert.objects.get(kind="access.crawler").severity == "critical"


def test_a_lab_history_page_counts_once_for_the_crawler_rule(doctor: User) -> None:
    from django.test import RequestFactory

    from vigie.audit import tags

    patient = make_patient()
    # A chronic patient's history: 30 reports read by one page view, twice.
    for _page in range(2):
        request = RequestFactory().get("/patients/x/results/")
        request.user = doctor
        for _ in range(30):
            record(
                "document.read",
                request=request,
                patient=patient,
                extra={"via": tags.VIA_RESULTS_HISTORY},
            )
    scan(0, Thresholds(reads_per_minute=10))
    assert not Alert.objects.filter(kind="access.crawler").exists()
    # Page views still count: a doctor paging through histories as fast as a script does.
    for _page in range(9):
        request = RequestFactory().get("/patients/x/results/")
        request.user = doctor
        record(
            "document.read",
            request=request,
            patient=patient,
            extra={"via": tags.VIA_RESULTS_HISTORY},
        )
    scan(0, Thresholds(reads_per_minute=10))
    assert Alert.objects.get(kind="access.crawler").severity == "critical"


def test_repeated_denials_from_one_address_raise_an_alert() -> None:
    from django.test import RequestFactory

    request = RequestFactory().get("/", REMOTE_ADDR="203.0.113.9")
    for _ in range(5):
        record("document.read.denied", request=request, outcome="denied")
    scan(0, Thresholds(denials=5))
    assert "203.0.113.9" in Alert.objects.get(kind="access.denials").summary


def _touch_a_decoy(doctor: User, capture_on_commit) -> None:
    """Through the guard's real path: an audited event names a decoy patient, the guard's
    receiver trips and records its own tag (no tag written by hand here)."""
    from vigie.guard import tripwire
    from vigie.guard.models import Canary

    decoy = Canary.objects.create(patient=make_patient(), label="test decoy")
    tripwire.decoys.invalidate()
    with capture_on_commit(execute=True):
        record("patient.view", actor=doctor, patient=decoy.patient)
    assert AuditEvent.objects.filter(action=tags.CANARY_TOUCHED).exists()


def test_a_touched_canary_is_always_critical(
    doctor: User, django_capture_on_commit_callbacks
) -> None:
    _touch_a_decoy(doctor, django_capture_on_commit_callbacks)
    scan(0)
    alert = Alert.objects.get(kind="canary.touched")
    assert (alert.severity, alert.audience) == ("critical", "auditor")


def test_a_night_download_is_flagged(doctor: User) -> None:
    night = datetime(2026, 11, 29, 2, 30, tzinfo=timezone.get_current_timezone())
    with mock.patch("vigie.audit.log.timezone.now", return_value=night):
        record("document.download", actor=doctor, patient=make_patient())
    scan(0)
    assert Alert.objects.get(kind="access.off_hours_download")


def test_watch_once_applies_the_rules(
    doctor: User, capsys, django_capture_on_commit_callbacks
) -> None:
    from django.core.management import call_command

    _touch_a_decoy(doctor, django_capture_on_commit_callbacks)
    last = AuditEvent.objects.order_by("-seq").values_list("seq", flat=True).first()
    call_command("audit", "watch", "--once")
    assert Alert.objects.filter(kind="canary.touched").exists()
    assert f"watch stopped at seq {last}" in capsys.readouterr().out
