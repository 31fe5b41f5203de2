"""Senders are identities (issue 16, parts 2 and 7), one attack per channel.

The poisoning sequence: Lab A's credentials claim "LABO-B's patient 424242" with the
victim's exact INS. Before the fix, Vigie stored the document for the victim *and* learnt
(LABO-B, 424242) → victim, so Lab B's later result for its own, different 424242 was filed
under the victim. Now the claim is refused, nothing stored or learnt, and Lab B's document
waits for reconciliation.

And a sender learns nothing: the answer for a known and an unknown INS is the same, byte
for byte, apart from the receipt id.
"""

from __future__ import annotations

import base64
import io
import json
import re
from pathlib import Path
from typing import Any

import pytest
from django.test import Client

from vigie.audit.models import AuditEvent
from vigie.intake.apikeys import create_key
from vigie.intake.fhir.resources import INS_SYSTEM
from vigie.intake.folder import HotFolder
from vigie.intake.hl7.handler import handle
from vigie.intake.hl7.testing import Oru, ack_fields
from vigie.intake.models import MllpSender
from vigie.intake.rest.testing import metadata, pdf, send
from vigie.records.identifiers import nir_key
from vigie.records.models import Document, Patient, PatientIdentifier, PendingDocument
from vigie.records.testing import VALID_PDF, lab_report_pdf, make_patient

pytestmark = pytest.mark.django_db

LAB_B_IPP = "424242"


@pytest.fixture(autouse=True)
def _env(settings: Any, vault_home: Path) -> None:
    settings.VIGIE_AUDIT_GROUP_COMMIT = False
    settings.SECURE_SSL_REDIRECT = False


@pytest.fixture
def victim() -> Patient:
    return make_patient("VICTIME")


def unknown_ins() -> str:
    body = "1990199999123"
    ins = f"{body}{nir_key(body):02d}"
    assert not Patient.objects.filter(ins=ins).exists()
    return ins


def nothing_stored_or_learnt() -> None:
    assert not PatientIdentifier.objects.exists(), "an identifier was learnt"
    assert not Document.objects.exists(), "a document was stored"
    assert not PendingDocument.objects.exists(), "a document was kept to reconcile"


def lab_b_document_waits_for_reconciliation(victim: Patient) -> None:
    assert not Document.objects.filter(patient=victim).exists(), "filed under the victim"
    pending = PendingDocument.objects.get()
    assert pending.identifiers["ipp"] == LAB_B_IPP
    assert "no patient has this IPP" in pending.reason


# --- REST --------------------------------------------------------------------------------


def rest_key(name: str, source: str) -> Client:
    _key, text = create_key(name, source_system=source, by="test")
    client = Client()
    client.defaults["HTTP_AUTHORIZATION"] = f"Bearer {text}"
    return client


def test_attack_lab_a_key_cannot_teach_lab_b_ipp_over_rest(victim: Patient) -> None:
    lab_a, lab_b = rest_key("lab-a", "LABO-A"), rest_key("lab-b", "LABO-B")
    claim = metadata(ins=victim.ins, ipp=LAB_B_IPP, ipp_source="LABO-B")
    response = send(lab_a, None, content=pdf(), meta=claim)
    assert response.status_code == 422, response.content
    assert response["Content-Type"] == "application/problem+json"
    problem = response.json()
    assert problem["type"] == "urn:vigie:problem:foreign-source"
    assert "LABO-A" in problem["detail"]
    nothing_stored_or_learnt()
    # Lab B's own patient 424242 (someone else, unknown here) is not filed under the victim.
    own = metadata(ipp=LAB_B_IPP, ipp_source="LABO-B", family_name="AUTRE")
    assert send(lab_b, None, content=pdf(), meta=own).status_code == 202
    lab_b_document_waits_for_reconciliation(victim)


def test_a_key_may_name_its_own_system_and_the_clinic_ipp(victim: Patient) -> None:
    lab_a = rest_key("lab-a", "LABO-A")
    # Its own numbering (case aside, as HL7 senders write it) is learnt in its own name.
    mine = metadata(ins=victim.ins, ipp="A-1", ipp_source="labo-a")
    assert send(lab_a, None, content=pdf(), meta=mine).status_code == 202
    assert PatientIdentifier.objects.get().source == "LABO-A"
    clinic = metadata(ipp=victim.ipp)
    assert send(lab_a, None, content=pdf(), meta=clinic).status_code == 202
    assert Document.objects.filter(patient=victim).count() == 2


def _receipt_free(content: bytes, receipt: str) -> bytes:
    assert receipt.encode() in content
    return content.replace(receipt.encode(), b"<receipt>")


def test_attack_rest_answers_are_identical_for_a_known_and_an_unknown_ins(
    victim: Patient,
) -> None:
    lab = rest_key("lab-a", "LABO-A")
    document = pdf()
    known = send(lab, None, content=document, meta=metadata(ins=victim.ins))
    unknown = send(lab, None, content=document, meta=metadata(ins=unknown_ins()))
    assert Document.objects.get().patient == victim  # one of each did happen
    assert PendingDocument.objects.count() == 1
    assert known.status_code == unknown.status_code == 202
    assert dict(known.items()).keys() == dict(unknown.items()).keys()
    for name, value in known.items():
        if name != "Content-Length":  # ids are all the same length anyway
            assert unknown[name] == value, name
    assert _receipt_free(known.content, known.json()["id"]) == _receipt_free(
        unknown.content, unknown.json()["id"]
    )


# --- FHIR --------------------------------------------------------------------------------

LAB_A_SYSTEM = "urn:oid:1.2.250.1.999.10"
LAB_B_SYSTEM = "urn:oid:1.2.250.1.999.20"


def fhir_post(client: Client, identifiers: list[dict[str, str]], **patient: Any) -> Any:
    resource = {
        "resourceType": "DocumentReference",
        "status": "current",
        "type": {"coding": [{"system": "http://loinc.org", "code": "11502-2"}]},
        "subject": {"reference": "#p"},
        "contained": [{"resourceType": "Patient", "id": "p", "identifier": identifiers, **patient}],
        "date": "2026-03-02T09:30:00+01:00",
        "description": "Numération formule sanguine",
        "content": [
            {
                "attachment": {
                    "contentType": "application/pdf",
                    "data": base64.b64encode(VALID_PDF).decode(),
                }
            }
        ],
    }
    return client.post(
        "/fhir/DocumentReference", json.dumps(resource), content_type="application/fhir+json"
    )


def test_attack_lab_a_key_cannot_teach_lab_b_ipp_over_fhir(victim: Patient) -> None:
    lab_a, lab_b = rest_key("lab-a", LAB_A_SYSTEM), rest_key("lab-b", LAB_B_SYSTEM)
    response = fhir_post(
        lab_a,
        [
            # Its own number first, Lab B's second: every identifier is Lab A's word.
            {"system": LAB_A_SYSTEM, "value": "A-9"},
            {"system": INS_SYSTEM, "value": str(victim.ins)},
            {"system": LAB_B_SYSTEM, "value": LAB_B_IPP},
        ],
    )
    assert response.status_code == 422, response.content
    outcome = json.loads(response.content)
    assert outcome["resourceType"] == "OperationOutcome"
    assert LAB_B_SYSTEM in outcome["issue"][0]["diagnostics"]
    nothing_stored_or_learnt()
    response = fhir_post(
        lab_b, [{"system": LAB_B_SYSTEM, "value": LAB_B_IPP}], name=[{"family": "AUTRE"}]
    )
    assert response.status_code == 202
    lab_b_document_waits_for_reconciliation(victim)


def test_attack_fhir_answers_are_identical_for_a_known_and_an_unknown_ins(
    victim: Patient,
) -> None:
    lab = rest_key("lab-a", LAB_A_SYSTEM)
    known = fhir_post(lab, [{"system": INS_SYSTEM, "value": str(victim.ins)}])
    unknown = fhir_post(lab, [{"system": INS_SYSTEM, "value": unknown_ins()}])
    assert Document.objects.get().patient == victim
    assert PendingDocument.objects.count() == 1
    assert known.status_code == unknown.status_code == 202
    assert "Location" not in known
    assert "Location" not in unknown
    receipts = [re.search(rb"received as ([\w-]+)", r.content) for r in (known, unknown)]
    assert all(receipts)
    assert _receipt_free(known.content, receipts[0][1].decode()) == _receipt_free(  # type: ignore[index]
        unknown.content,
        receipts[1][1].decode(),  # type: ignore[index]
    )


# --- HL7 v2 ------------------------------------------------------------------------------


def mllp_sender(name: str, source: str) -> MllpSender:
    return MllpSender.objects.create(name=name, source_system=source)


def test_attack_lab_a_sender_cannot_teach_lab_b_ipp_over_hl7(victim: Patient) -> None:
    lab_a, lab_b = mllp_sender("Lab A", "LABO-A"), mllp_sender("Lab B", "LABO-B")
    claim = Oru(
        sending_facility="LABO-B", ins=str(victim.ins), ipp=LAB_B_IPP, ipp_authority="LABO-B"
    )
    reply = handle(claim.encode(), sender=lab_a)
    fields = ack_fields(reply.ack)
    assert fields["code"] == "AR", fields
    assert "LABO-A" in fields["text"]
    nothing_stored_or_learnt()
    rejected = AuditEvent.objects.filter(action="intake.rejected").latest("seq")
    assert rejected.extra["sender"] == "Lab A"
    # Lab B's own 424242, no INS: to reconcile, and its control id is not "already taken"
    # by Lab A's attempt in Lab B's name.
    own = Oru(sending_facility="LABO-B", ipp=LAB_B_IPP, ipp_authority="", name="AUTRE^Jean")
    reply = handle(own.encode(), sender=lab_b)
    assert reply.code == "AA"
    assert not reply.duplicate
    lab_b_document_waits_for_reconciliation(victim)
    assert PendingDocument.objects.get().source_system == "LABO-B"


def test_attack_an_hl7_message_cannot_choose_the_origin_doctors_see(victim: Patient) -> None:
    lab_a = mllp_sender("Lab A", "LABO-A")
    forged = Oru(
        sending_application="CHU-REFERENCE",
        sending_facility="CHU-REFERENCE",
        ipp="",
        ins=str(victim.ins),
    )
    reply = handle(forged.encode(), sender=lab_a)
    assert reply.code == "AA"
    document = Document.objects.get()
    assert document.source_system == "LABO-A"
    received = AuditEvent.objects.filter(action="intake.received").latest("seq")
    assert "CHU-REFERENCE" not in json.dumps(received.extra)


def test_attack_hl7_acks_are_identical_for_a_known_and_an_unknown_ins(victim: Patient) -> None:
    lab = mllp_sender("Lab A", "LABO-A")
    known = handle(Oru(control_id="MSG-K", ipp="", ins=str(victim.ins)).encode(), sender=lab)
    unknown = handle(Oru(control_id="MSG-U", ipp="", ins=unknown_ins()).encode(), sender=lab)
    assert known.document_id  # one of each did happen
    assert unknown.pending_id
    # HL7 has no receipt id: MSA-2 echoes the sender's own control id. The ACK's own
    # control id (MSH-10) and time (MSH-7) are fresh in every ACK. Nothing else may differ.
    a, b = ack_fields(known.ack), ack_fields(unknown.ack.replace(b"MSG-U", b"MSG-K"))
    assert a == b

    def fixed(ack: bytes) -> list[list[str]]:
        segments = [line.split("|") for line in ack.decode().split("\r") if line]
        segments[0][6] = segments[0][9] = ""
        return segments

    assert fixed(known.ack) == fixed(unknown.ack.replace(b"MSG-U", b"MSG-K"))


# --- hot folder --------------------------------------------------------------------------


def drop_pair(folder: Path, stem: str, sidecar: dict[str, Any]) -> None:
    (folder / f"{stem}.json").write_text(json.dumps(sidecar))
    (folder / f"{stem}.pdf").write_bytes(lab_report_pdf())


def sidecar(**patient: Any) -> dict[str, Any]:
    return {
        "patient": patient,
        "document": {"kind": "lab_result", "title": "NFS", "clinical_date": "2026-11-28"},
    }


def hot_folder(tmp_path: Path, name: str, source: str) -> HotFolder:
    path = tmp_path / name
    path.mkdir()
    # Vigie's own done/ and quarantine/, apart from the depot (the hot folder's own rule).
    outbox = tmp_path / f"{name}-outbox"
    outbox.mkdir(mode=0o700)
    folder = HotFolder(path, outbox, source_system=source, settle=0, out=io.StringIO())
    folder.prepare()
    return folder


def test_attack_lab_a_folder_cannot_teach_lab_b_ipp(tmp_path: Path, victim: Patient) -> None:
    lab_a, lab_b = hot_folder(tmp_path, "a", "LABO-A"), hot_folder(tmp_path, "b", "LABO-B")
    drop_pair(lab_a.path, "claim", sidecar(ins=victim.ins, ipp=LAB_B_IPP, ipp_source="LABO-B"))
    drop_pair(
        lab_a.path,
        "disguised",
        {**sidecar(ins=victim.ins), "source_system": "LABO-B"},
    )
    outcomes = {o.name: o for o in lab_a.scan()[0]}
    assert outcomes["claim.pdf"].status == "quarantined"
    assert "LABO-A" in outcomes["claim.pdf"].detail
    assert outcomes["disguised.pdf"].status == "quarantined"
    assert "LABO-B" in outcomes["disguised.pdf"].detail
    nothing_stored_or_learnt()
    drop_pair(lab_b.path, "own", sidecar(ipp=LAB_B_IPP, ipp_source="LABO-B", family_name="AUTRE"))
    [outcome] = lab_b.scan()[0]
    assert outcome.status == "pending"
    lab_b_document_waits_for_reconciliation(victim)


def test_attack_the_folder_says_the_same_for_a_known_and_an_unknown_ins(
    tmp_path: Path, victim: Patient
) -> None:
    lab = hot_folder(tmp_path, "a", "LABO-A")
    drop_pair(lab.path, "known", sidecar(ins=victim.ins))
    drop_pair(lab.path, "unknown", sidecar(ins=unknown_ins()))
    statuses = sorted(o.status for o in lab.scan()[0])
    assert statuses == ["pending", "stored"]  # for the clinic's log only
    done = sorted(p.name for p in (lab.outbox / "done").iterdir())
    assert done == ["known.json", "known.pdf", "unknown.json", "unknown.pdf"]
