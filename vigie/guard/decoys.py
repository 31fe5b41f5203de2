"""Decoy patients and documents: in nobody's scope, so any touch of one is an intrusion.

`create_canaries()` seeds decoys that look exactly like real records: a patient drawn by the
synthetic generators (`vigie.synthetic`: French names, a valid INS) with an IPP shaped like
this clinic's own, documents rendered by the same generators and stored through
`records.ingest` (encrypted like any other). No care relationship is ever made, so no doctor
lists or opens them; only the `Canary` row (IT's label) tells them apart. What a touch does is
`vigie.guard.tripwire`'s business.
"""

from __future__ import annotations

import io
import random
import re
from dataclasses import replace
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING

from django.db import transaction
from django.utils import timezone

from vigie.audit.log import record
from vigie.guard import tripwire
from vigie.guard.models import Canary
from vigie.records.identifiers import InvalidIdentifier, validate_ipp
from vigie.records.ingest import DocumentMeta, ingest
from vigie.records.models import Patient

if TYPE_CHECKING:
    from vigie.synthetic.clinic import Clinic, DocumentSpec, PatientSpec

ACTION_CREATED = "guard.canary.created"

# Synthetic clinic patients built per attempt: enough that several follow nobody at all.
_POOL_PATIENTS = 20
_ATTEMPTS = 20
_IPP_PATTERN = re.compile(r"^(.*?)(\d+)$")


def create_canaries(
    count: int = 1, *, documents_per_patient: int = 2, rng: random.Random | None = None
) -> list[Canary]:
    """Seed `count` decoy patients, each with `documents_per_patient` stored documents."""
    if count < 1:
        raise ValueError("count must be at least 1")
    if documents_per_patient < 1:
        raise ValueError("documents_per_patient must be at least 1")
    # The system's generator by default: decoys must not be predictable from the demo
    # clinic's seed (the synthetic generators only ever see a seed drawn from it).
    rng = rng or random.SystemRandom()
    created = []
    for _ in range(count):
        created.append(_create_one(rng, documents_per_patient))
    tripwire.decoys.invalidate()
    return created


def _create_one(rng: random.Random, documents: int) -> Canary:
    # Imported here: the synthetic generators (Faker, reportlab) cost a process ~1 s to
    # import, and only `vigie canary create` needs them.
    from vigie.synthetic.pdf import render_document

    spec, specs = _pick(rng, documents)
    ipp = _ipp_like_ours(rng, spec.ipp)
    spec = replace(spec, ipp=ipp)
    patient = Patient(
        ipp=ipp,
        ins=spec.ins,
        family_name=spec.family_name,
        given_names=spec.given_names,
        birth_date=spec.birth_date,
        sex=spec.sex,
        address_line=spec.address_line,
        postal_code=spec.postal_code,
        city=spec.city,
        created_at=_plausible_creation(rng),
    )
    patient.full_clean()
    patient.save()
    for doc in specs:
        doc = replace(doc, patient_ipp=ipp)
        ingest(
            patient,
            DocumentMeta(
                kind=doc.kind,
                title=doc.title,
                clinical_date=doc.clinical_date,
                author=doc.author,
                source_system=doc.source_system,
            ),
            io.BytesIO(render_document(doc, spec, fictitious=False)),
        )
    # Last: until this row exists the patient is not a decoy, so the ingest events above do
    # not trip. (A crash before it leaves an unlabelled patient in nobody's scope: harmless.)
    with transaction.atomic():
        label = f"decoy {Canary.objects.count() + 1}"
        canary = Canary.objects.create(patient=patient, label=label)
        record(
            ACTION_CREATED,
            patient=patient,
            extra={"label": label, "documents": len(specs)},
        )
    return canary


def _pick(rng: random.Random, documents: int) -> tuple[PatientSpec, list[DocumentSpec]]:
    """A synthetic patient nobody follows, with an INS free here and enough past documents."""
    from vigie.synthetic.clinic import build_clinic

    today = timezone.localdate()
    for _ in range(_ATTEMPTS):
        clinic = build_clinic(
            seed=rng.randrange(2**32),
            patients=_POOL_PATIENTS,
            documents=_POOL_PATIENTS * (documents + 2),
        )
        candidates = _candidates(clinic, today, documents)
        rng.shuffle(candidates)
        for spec, specs in candidates:
            if Patient.objects.filter(ins=spec.ins).exists():
                continue
            chosen = sorted(rng.sample(specs, documents), key=lambda d: d.clinical_date)
            return spec, chosen
    raise RuntimeError("could not draw a decoy patient; try again")


def _candidates(
    clinic: Clinic, today: date, documents: int
) -> list[tuple[PatientSpec, list[DocumentSpec]]]:
    followed = {r.patient_ipp for r in clinic.relationships}
    found = []
    for spec in clinic.patients:
        # Nobody follows them in the synthetic clinic either, so no document names one of our doctors;
        # with an INS, like most real patients (and findable by break-the-glass, as bait).
        if spec.ipp in followed or spec.ins is None:
            continue
        past = [d for d in clinic.documents_of(spec.ipp) if d.clinical_date <= today]
        if len(past) >= documents:
            found.append((spec, past))
    return found


def _ipp_like_ours(rng: random.Random, fallback: str) -> str:
    """An unused IPP shaped like this clinic's own: same prefix and width, a number within
    the range in use (a decoy's IPP must not stand out among sequential numbers)."""
    recent = list(
        Patient.objects.exclude(pk__in=Canary.objects.values("patient_id"))
        .order_by("-pk")
        .values_list("ipp", flat=True)[:200]
    )
    pattern = _IPP_PATTERN.match(rng.choice(recent)) if recent else None
    for attempt in range(100):
        if pattern is None:
            # No patient yet: the synthetic clinic's own format.
            candidate = fallback if attempt == 0 else f"IPP{rng.randrange(1_000_000, 10_000_000)}"
        else:
            prefix, digits = pattern.group(1), pattern.group(2)
            numbers = [
                int(m.group(2))
                for ipp in recent
                if (m := _IPP_PATTERN.match(ipp))
                and m.group(1) == prefix
                and len(m.group(2)) == len(digits)
            ]
            low, high = min(numbers), max(numbers)
            if high - low < 100:
                high = low + 1000
            number = rng.randint(low, min(high, 10 ** len(digits) - 1))
            candidate = f"{prefix}{number:0{len(digits)}d}"
        try:
            candidate = validate_ipp(candidate)
        except InvalidIdentifier:
            continue
        if not Patient.objects.filter(ipp=candidate).exists():
            return candidate
    raise RuntimeError("could not find a free IPP for a decoy")


def _plausible_creation(rng: random.Random) -> datetime:
    """Spread the decoys' creation dates over the clinic's history, not all at one moment."""
    now = timezone.now()
    first = Patient.objects.order_by("created_at").values_list("created_at", flat=True).first()
    start = first if first is not None and first < now else now - timedelta(days=365)
    span = max(int((now - start).total_seconds()), 1)
    return start + timedelta(seconds=rng.randrange(span))
