"""The demo's lab messages say what the demo shows: through the real HL7 handler, each one
gives the result set the demo seeds beside it (values, units, ranges, flags, codes)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from vigie.demo.lab_messages import lab_message
from vigie.intake.hl7.handler import handle
from vigie.intake.models import MllpSender
from vigie.records.models import Document, Patient
from vigie.records.results_store import open_attachment, open_results
from vigie.synthetic.clinic import build_clinic
from vigie.synthetic.payloads import LabReport
from vigie.synthetic.pdf import render_document

pytestmark = pytest.mark.django_db


def test_the_demo_messages_read_back_as_the_demo_results(vault_home: Path) -> None:
    clinic = build_clinic(patients=12, documents=60)
    labs = [d for d in clinic.documents if isinstance(d.payload, LabReport)][:4]
    assert labs, "the small clinic has lab reports"
    compared = 0
    for doc in labs:
        spec = clinic.patient(doc.patient_ipp)
        patient, _ = Patient.objects.get_or_create(
            ipp=spec.ipp,
            defaults={
                "ins": spec.ins,
                "family_name": spec.family_name,
                "given_names": spec.given_names,
                "birth_date": spec.birth_date,
                "sex": spec.sex,
            },
        )
        sender, _ = MllpSender.objects.get_or_create(
            name=doc.source_system, defaults={"source_system": doc.source_system}
        )
        pdf = render_document(doc, spec)
        message, expected = lab_message(doc, spec, pdf, doc.external_id)
        reply = handle(message, sender=sender, local_authority="")
        assert reply.code == "AA", reply.reason
        if not reply.document_id:
            # The lab's own IPP is not this clinic's: matched by INS, or reconciled.
            assert spec.ins is None
            continue
        document = Document.objects.get(pk=reply.document_id)
        assert document.patient == patient
        got = open_results(document)
        assert got is not None
        assert got.groups == expected.groups
        assert replace(got, groups=()) == replace(expected, groups=())
        assert open_attachment(document) == ("application/pdf", pdf)
        compared += 1
    assert compared >= 2
