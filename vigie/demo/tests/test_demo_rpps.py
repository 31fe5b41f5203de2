"""The demo's doctors carry RPPS numbers, so `make demo-psc` can sign them in through PSC."""

from __future__ import annotations

import re

import pytest

from vigie.accounts.models import Role, User
from vigie.demo.seed import _create_people
from vigie.synthetic.clinic import build_clinic

pytestmark = pytest.mark.django_db


def test_demo_doctors_get_distinct_rpps_numbers_and_nobody_else_does() -> None:
    _create_people(build_clinic())
    doctors = list(User.objects.filter(role=Role.DOCTOR).values_list("rpps", flat=True))
    assert doctors
    assert all(re.fullmatch(r"\d{11}", str(r)) for r in doctors)
    assert len(set(doctors)) == len(doctors)
    assert not User.objects.exclude(role=Role.DOCTOR).exclude(rpps=None).exists()
