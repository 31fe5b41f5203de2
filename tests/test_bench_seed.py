"""The benchmarks that sign in as a doctor (fetch, readcpu, coldstart) seed that doctor with
`seed_reading_doctor`, in the installation's `vigie shell`, from `bench.fetch.seed_args`.

A change to the function's arguments once broke `make bench`'s cold-start stage and nothing
else noticed (the stage runs only in `make bench`): here the arguments the bench passes are
held to the function itself."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.fetch import _DOCTOR, seed_args
from vigie.accounts.models import User
from vigie.records.models import Document
from vigie.records.testing import VALID_PDF, seed_reading_doctor

pytestmark = pytest.mark.django_db


def test_the_bench_seeds_its_doctor_with_the_arguments_it_passes(
    vault_home: Path, tmp_path: Path
) -> None:
    pdf = tmp_path / "bench.pdf"
    pdf.write_bytes(VALID_PDF)
    facts = seed_reading_doctor(**seed_args("a long bench password", pdf))
    doctor = User.objects.get(username=_DOCTOR["username"])
    assert doctor.check_password("a long bench password")
    assert Document.objects.get(pk=facts["document"]).patient.ipp == _DOCTOR["ipp"]
    assert len(bytes.fromhex(facts["totp_key"])) >= 20
