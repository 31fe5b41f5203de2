"""What the outside-in probe asks each round, from each base URL, without credentials.

The login page, a rotating sample of document URLs and patient pages (decoys drawn like any
record, see `_record_paths`), the paths an exposed server would give away (blob store,
keyring, database, .git, static tricks), the static root, admin, API and audit routes, and
robots.txt. The vantage point is told these URLs and nothing else about them.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.urls import reverse

from vigie.guard.models import Canary
from vigie.guard.policy import Policy
from vigie.records.models import Document, Patient

PATIENT_PAGES = 3
# Paths an exposed server would show if it served its data directory, not Vigie.
STORAGE_PATHS = (
    "/blobs/",
    "/var/",
    "/media/",
    "/keyring/keyring.json",
    "/vigie.sqlite3",
    "/.git/config",
    "/.env",
    "/static/../vigie.sqlite3",
    "/static/..%2fkeyring/keyring.json",
)


@dataclass(frozen=True)
class ProbeRequest:
    url: str
    category: str
    # The fetcher returns the body's first KiB as text (robots.txt); never for records.
    want_text: bool = False


def login_path() -> str:
    return reverse(settings.LOGIN_URL)


def _random_rows(queryset: Any, count: int, rng: random.Random) -> list[Any]:
    """`count` distinct rows at random offsets (no full scan of a large table)."""
    total = queryset.count()
    if total == 0 or count <= 0:
        return []
    offsets = rng.sample(range(total), min(count, total))
    rows = []
    for offset in offsets:
        rows.extend(queryset.order_by("pk")[offset : offset + 1])
    return rows


def _record_paths(policy: Policy, rng: random.Random) -> list[tuple[str, str]]:
    """Document and patient URLs, chosen afresh each round, decoys drawn like any record.

    The vantage point sees every URL we send it; if it is compromised, its owner must not
    learn which records are decoys (he would avoid them, and the signatures he is handed
    would tell him which URLs are safe to fetch). So the round draws `probe_sample_size`
    documents uniformly from ALL documents and PATIENT_PAGES patients uniformly from ALL
    patients, decoys included, asks each document in the same three forms, and sends the
    URLs sorted (their ids are random, so the order says nothing the set does not).

    What "cannot be told apart" means here: the distribution of everything the vantage point
    is sent, round after round, is the same whichever records are decoys. Permute the decoy
    labels among the records and nothing it sees changes in law, so no test over any number
    of rounds does better than guessing. The price, with few decoys among many documents,
    is that a decoy is probed as rarely as any one document is (probe_sample_size / number
    of documents per round): that is the point, not a loss. Probing the decoys more often
    is the tell issue 17 found; never probing them is a tell too (to someone holding leaked
    links: the ones the probe never asks for). A decoy is only a protected URL like the
    others for the probe: the real documents' refusals already prove what a decoy's would.
    """
    decoy_patient_ids = set(Canary.objects.values_list("patient_id", flat=True))
    documents = _random_rows(Document.objects.all(), policy.probe_sample_size, rng)
    patients = _random_rows(Patient.objects.all(), PATIENT_PAGES, rng)
    paths: list[tuple[str, str]] = []
    for document in documents:
        category = "decoy" if document.patient_id in decoy_patient_ids else "document"
        for name in (
            "document_content",
            "document_download",
            "document_viewer",
            "document_attachment",
        ):
            paths.append((reverse(f"portal:{name}", args=[document.pk]), category))
    for patient in patients:
        category = "decoy" if patient.pk in decoy_patient_ids else "patient"
        paths.append((reverse("portal:patient_detail", args=[patient.public_id]), category))
        # The lab history discloses every value of the patient: probed like their page.
        paths.append((reverse("portal:patient_results", args=[patient.public_id]), category))
    return sorted(paths)


def fixed_paths() -> list[tuple[str, str]]:
    """Paths that need no database: storage, static, admin, API, audit, robots.txt."""
    paths = [(path, "storage") for path in STORAGE_PATHS]
    paths.append(("/" + settings.STATIC_URL.strip("/") + "/", "static"))
    paths.append(("/admin/", "admin"))
    paths.extend((("/api/", "api"), ("/fhir/Patient", "api")))
    paths.append(("/audit/", "audit"))
    paths.append(("/robots.txt", "robots"))
    return paths


def for_each_base(policy: Policy, paths: list[tuple[str, str]]) -> list[ProbeRequest]:
    requests = []
    for base in policy.probe_base_urls:
        root = base.rstrip("/")
        for path, category in paths:
            requests.append(ProbeRequest(root + path, category, want_text=category == "robots"))
    return requests


def build_requests(policy: Policy, rng: random.Random | None = None) -> list[ProbeRequest]:
    """The round's requests for every base URL; real and decoy ids vary from round to round."""
    # The system's generator: which records a round names must not be predictable from the
    # rounds an observer has already seen.
    rng = rng or random.SystemRandom()
    login = [(login_path(), "login")]
    return for_each_base(policy, login + _record_paths(policy, rng) + fixed_paths())
