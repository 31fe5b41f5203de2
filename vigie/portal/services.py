"""Queries behind the portal pages: search within scope, the timeline, the last visit."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

from django.db.models import Q, QuerySet
from django.utils import timezone

from vigie.accounts.models import User
from vigie.records.access import UserLike, patients_in_scope
from vigie.records.identifiers import InvalidIdentifier, normalize_nir, validate_nir
from vigie.records.models import Document, EmergencyAccess, Patient, PatientVisit

# A scope of a few hundred patients is normal; past this the doctor should refine the search.
SEARCH_LIMIT = 100


def search_patients(
    user: UserLike | None, *, q: str = "", birth_date: date | None = None
) -> QuerySet[Patient]:
    """Patients in the user's scope matching every word of `q` (name part, exact IPP or
    INS) and the birth date. Partial names are safe here: the scope bounds the result."""
    patients = patients_in_scope(user)
    try:
        # An INS is often typed in groups ("2 85 03 75 …"): taken whole before the split.
        ins = validate_nir(q)
    except InvalidIdentifier:
        ins = None
    if ins is not None:
        patients = patients.filter(ins=ins)
    for word in [] if ins else q.split():
        patients = patients.filter(
            Q(family_name__icontains=word)
            | Q(given_names__icontains=word)
            | Q(ipp__iexact=word)
            | Q(ins=normalize_nir(word))
        )
    if birth_date is not None:
        patients = patients.filter(birth_date=birth_date)
    return patients.order_by("family_name", "given_names", "birth_date")


def emergency_expiries(user: UserLike | None) -> dict[int, datetime]:
    """patient pk → end of the user's active emergency grant, for the badges in lists."""
    if user is None or not user.is_authenticated:
        return {}
    expiries: dict[int, datetime] = {}
    for patient_id, expires_at in (
        EmergencyAccess.objects.active()
        .filter(doctor_id=user.pk)
        .values_list("patient_id", "expires_at")
    ):
        expiries[patient_id] = max(expires_at, expiries.get(patient_id, expires_at))
    return expiries


@dataclass(frozen=True)
class TimelineFilter:
    kind: str = ""
    date_from: date | None = None
    date_to: date | None = None


def timeline(patient: Patient, filters: TimelineFilter) -> QuerySet[Document]:
    documents = Document.objects.filter(patient=patient)
    if filters.kind:
        documents = documents.filter(kind=filters.kind)
    if filters.date_from is not None:
        documents = documents.filter(clinical_date__gte=filters.date_from)
    if filters.date_to is not None:
        documents = documents.filter(clinical_date__lte=filters.date_to)
    return documents.order_by("-clinical_date", "-received_at")


def record_visit(doctor: User, patient: Patient, at: datetime | None = None) -> datetime | None:
    """Note this visit; return when the doctor last came before it (None: first visit)."""
    moment = at or timezone.now()
    visit, created = PatientVisit.objects.get_or_create(
        doctor=doctor, patient=patient, defaults={"last_visit_at": moment}
    )
    if created:
        return None
    previous = visit.last_visit_at
    # A conditional update, so two tabs opened at once cannot move the mark backwards.
    PatientVisit.objects.filter(pk=visit.pk, last_visit_at__lt=moment).update(last_visit_at=moment)
    return previous
