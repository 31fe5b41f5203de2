"""What a compromised vantage host learns from the probe's URLs: nothing about the decoys.

The attacker sees every round's URLs (and nothing else of ours). Each test below asks, as he
would, whether the decoys' URLs behave differently from the real records' over 50 rounds.

The statistical test is exact, not asymptotic, so its false-failure rate is known: in each
round, given how many documents (patient pages) the round names, the number of decoys among
them follows the hypergeometric law if the choice does not depend on decoy status; the
total over the rounds then follows the rounds' convolution, and the two-sided p-value is the
probability of every total at most as likely as the one seen. The test fails below
ALPHA = 1e-6, so on a correct sampler it fails falsely at most once in a million runs
whatever the system random generator draws (no seed needed, none used). On main's sampler,
where every decoy was in every round, the p-value was below 1e-100.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from urllib.parse import urlsplit

import pytest

from vigie.guard import probe_requests
from vigie.guard.models import Canary
from vigie.guard.policy import Policy
from vigie.records.models import Document, Patient
from vigie.records.testing import make_document, make_patient

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("vault_home")]

ROUNDS = 50
ALPHA = 1e-6
BASE = "https://portal.example"
REAL_PATIENTS = 10
REAL_DOCUMENTS_EACH = 3
DECOYS = 2
DECOY_DOCUMENTS_EACH = 2
SAMPLE = 3

DOCUMENT_URL = re.compile(r"^/documents/([^/]+)/(?:content|download)?$")
PATIENT_URL = re.compile(r"^/patients/([^/]+)/$")


@pytest.fixture
def clinic() -> tuple[set[str], set[str]]:
    """Ten real patients with three documents each, two decoys with two: (decoy document
    ids, decoy patient public ids). Built with the plain factories: what is sampled is rows."""
    for n in range(REAL_PATIENTS):
        patient = make_patient(f"REEL{n}")
        for _ in range(REAL_DOCUMENTS_EACH):
            make_document(patient)
    decoy_documents: set[str] = set()
    decoy_patients: set[str] = set()
    for n in range(DECOYS):
        patient = make_patient(f"LEURRE{n}")
        for _ in range(DECOY_DOCUMENTS_EACH):
            decoy_documents.add(make_document(patient).pk)
        Canary.objects.create(patient=patient, label=f"decoy {n}")
        decoy_patients.add(patient.public_id)
    return decoy_documents, decoy_patients


def policy() -> Policy:
    return Policy(
        listeners=(),
        maintenance_ports=(),
        probe_base_urls=(BASE,),
        probe_sample_size=SAMPLE,
    )


def record_urls(requests: Sequence[probe_requests.ProbeRequest]) -> list[str]:
    """The paths of the round's record URLs (documents and patient pages), in sent order."""
    paths = [urlsplit(r.url).path for r in requests]
    return [p for p in paths if DOCUMENT_URL.match(p) or PATIENT_URL.match(p)]


def named(paths: Sequence[str], pattern: re.Pattern[str]) -> set[str]:
    return {m.group(1) for p in paths if (m := pattern.match(p))}


def hypergeometric(population: int, marked: int, drawn: int) -> list[float]:
    """P(k marked among `drawn` taken without replacement), k = 0..drawn."""
    total = math.comb(population, drawn)
    return [
        math.comb(marked, k) * math.comb(population - marked, drawn - k) / total
        for k in range(drawn + 1)
    ]


def exact_p_value(population: int, marked: int, rounds: Sequence[tuple[int, int]]) -> float:
    """Two-sided p-value of the decoys' total over `rounds` ((drawn, decoys drawn) each),
    under "which items a round names does not depend on whether they are decoys"."""
    law = [1.0]
    for drawn, _ in rounds:
        step = hypergeometric(population, marked, drawn)
        convolved = [0.0] * (len(law) + len(step) - 1)
        for i, a in enumerate(law):
            for j, b in enumerate(step):
                convolved[i + j] += a * b
        law = convolved
    seen = sum(decoys for _, decoys in rounds)
    # Relative slack: equally likely totals computed along different paths count as such.
    return min(1.0, sum(p for p in law if p <= law[seen] * (1 + 1e-9)))


def test_the_exact_test_separates_what_it_must_and_nothing_else() -> None:
    # The test's own check: every decoy in every round is told apart at once...
    assert exact_p_value(34, 4, [(7, 4)] * ROUNDS) < 1e-100
    # ...the expected share is not (4 decoys in 34, 3 drawn: 0.35 a round, 18 in 50)...
    assert exact_p_value(34, 4, [(3, 0)] * 32 + [(3, 1)] * 18) > 0.5
    # ...and decoys never drawn are a tell too (an attacker holding leaked links sees it).
    assert exact_p_value(34, 4, [(3, 0)] * ROUNDS) < 1e-6


def test_attack_vantage_host_cannot_tell_decoys_from_real_records_by_frequency(
    clinic: tuple[set[str], set[str]],
) -> None:
    decoy_documents, decoy_patients = clinic
    documents, patients = Document.objects.count(), Patient.objects.count()
    document_rounds: list[tuple[int, int]] = []
    patient_rounds: list[tuple[int, int]] = []
    for _ in range(ROUNDS):
        paths = record_urls(probe_requests.build_requests(policy()))
        in_round = named(paths, DOCUMENT_URL)
        pages = named(paths, PATIENT_URL)
        document_rounds.append((len(in_round), len(in_round & decoy_documents)))
        patient_rounds.append((len(pages), len(pages & decoy_patients)))

    p_documents = exact_p_value(documents, len(decoy_documents), document_rounds)
    p_patients = exact_p_value(patients, len(decoy_patients), patient_rounds)
    assert p_documents >= ALPHA, (p_documents, document_rounds[:5])
    assert p_patients >= ALPHA, (p_patients, patient_rounds[:5])
    # How many a round names cannot depend on the decoys either.
    assert {drawn for drawn, _ in document_rounds} == {SAMPLE}
    assert {drawn for drawn, _ in patient_rounds} == {probe_requests.PATIENT_PAGES}


def test_attack_vantage_host_cannot_tell_decoys_by_url_form_or_order(
    clinic: tuple[set[str], set[str]],
) -> None:
    decoy_documents, _decoy_patients = clinic
    forms: dict[bool, set[tuple[str, ...]]] = {True: set(), False: set()}
    seen_decoy = seen_real = False
    for _ in range(ROUNDS):
        paths = record_urls(probe_requests.build_requests(policy()))
        # The order is a function of the URLs alone (ids are random): it says nothing more.
        assert paths == sorted(paths)
        for document_id in named(paths, DOCUMENT_URL):
            decoy = document_id in decoy_documents
            seen_decoy, seen_real = seen_decoy or decoy, seen_real or not decoy
            prefix = f"/documents/{document_id}/"
            forms[decoy].add(tuple(sorted(p[len(prefix) :] for p in paths if p.startswith(prefix))))
    # Every document, decoy or not, is asked for in the same three forms.
    assert forms[True] <= {("", "content", "download")}
    assert forms[False] == {("", "content", "download")}
    assert seen_real
