"""`seed_reading_doctor`: what the behind-proxies test and the fetch benchmark sign in as."""

from __future__ import annotations

from pathlib import Path

import pytest
from django_otp.oath import totp

from vigie.accounts.models import SealedTOTPDevice, User
from vigie.records import access
from vigie.records.models import Document
from vigie.records.testing import VALID_PDF, seed_reading_doctor

pytestmark = pytest.mark.django_db

PERSONA = {
    "username": "dr.seed",
    "first_name": "Sam",
    "last_name": "Seed",
    "ipp": "SEED-0001",
    "family_name": "SEED",
    "given_names": "Test",
    "source_system": "lab",
}


def test_it_seeds_a_doctor_who_signs_in_and_may_read_the_document(
    vault_home: Path, tmp_path: Path
) -> None:
    pdf = tmp_path / "document.pdf"
    pdf.write_bytes(VALID_PDF)
    facts = seed_reading_doctor(password="a long test password", pdf=str(pdf), **PERSONA)
    doctor = User.objects.get(username="dr.seed")
    assert doctor.check_password("a long test password")
    # The key handed back is the authenticator's real one, not the stored decoy column:
    # the codes computed from it are the codes the device accepts.
    device = SealedTOTPDevice.objects.get(user=doctor, confirmed=True)
    assert device.key != facts["totp_key"]
    assert device.verify_token(f"{totp(bytes.fromhex(facts['totp_key'])):06d}")
    document = Document.objects.get(pk=facts["document"])
    assert document.patient.ipp == "SEED-0001"
    assert document.source_system == "lab"
    assert access.decide(doctor, "view", document=document)
