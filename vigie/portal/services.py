"""Queries behind the portal pages: search within scope, the timeline."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime

from django.db.models import Q, QuerySet, Value
from django.db.models.functions import Replace

from vigie.lib.folding import fold_compact
from vigie.records.access import UserLike, patients_in_scope
from vigie.records.identifiers import InvalidIdentifier, normalize_nir, validate_nir
from vigie.records.models import Document, EmergencyAccess, Patient

# The FHIR API's ceiling on one page of patients; the portal pages with PAGE_SIZE instead.
SEARCH_LIMIT = 100
PAGE_SIZE = 50

# The ways a birth date is typed in the one search box: 15/03/1984, 15-03-1984, 15.03.1984,
# 15031984 and 1984-03-15 (what the browser's date field sends).
_DATE_FORMATS = ("%d/%m/%Y", "%d-%m-%Y", "%d.%m.%Y", "%d%m%Y", "%Y-%m-%d")
# strptime alone would read "1531984" as 15/3/1984: two-digit days and months only.
_DATE_SHAPE = re.compile(
    r"^([0-9]{2}[/.-][0-9]{2}[/.-][0-9]{4}|[0-9]{8}|[0-9]{4}-[0-9]{2}-[0-9]{2})$"
)
# An IPP typed with or without the clinic's letter prefix, leading zeros optional:
# "IPP0000123", "ipp-123" and "0000123" all say prefix "ipp", number 123.
_IPP_WORD = re.compile(r"^([a-z]*)[-_.]?0*([0-9]+)$", re.IGNORECASE)
# "IPP 0000123" typed with a space: one word, not the name part "ipp" and a number.
_IPP_LABEL = re.compile(r"\b(ipp)\s*[:#]?\s+(?=[0-9])", re.IGNORECASE)


def parse_birth_date(word: str) -> list[date]:
    """Every date `word` can be read as (none, or one: the formats do not overlap)."""
    found: list[date] = []
    if not _DATE_SHAPE.match(word):
        return found
    for fmt in _DATE_FORMATS:
        try:
            parsed = datetime.strptime(word, fmt).date()
        except ValueError:
            continue
        if parsed not in found:
            found.append(parsed)
    return found


def _ipp_condition(word: str) -> Q:
    condition = Q(ipp__iexact=word)
    match = _IPP_WORD.match(word)
    if match is not None:
        prefix, number = match.group(1).lower(), str(int(match.group(2)))
        # Typed without a prefix: any prefix (or none); typed with one: that one or none.
        letters = f"({prefix})?" if prefix else "[a-z]*"
        condition |= Q(ipp__iregex=f"^{letters}[-_.]?0*{number}$")
    return condition


def _word_condition(word: str) -> Q:
    """A word of the query matches the name (folded, in any order), the IPP, the INS or,
    typed as a date, the birth date."""
    condition = _ipp_condition(word) | Q(ins=normalize_nir(word))
    name_part = fold_compact(word)
    if name_part:
        condition |= Q(compact_name__contains=name_part)
    for birth_date in parse_birth_date(word):
        condition |= Q(birth_date=birth_date)
    return condition


def search_patients(
    user: UserLike | None, *, q: str = "", birth_date: date | None = None
) -> QuerySet[Patient]:
    """Patients in the user's scope matching every word of `q` and the birth date.

    A word is part of the name (accents, case, hyphens and spaces do not count; family and
    given names in either order), the IPP with or without its prefix, the INS or a birth
    date. Partial names are safe here: the scope bounds the result, and the folded key is
    the name itself, nothing more sensitive.
    """
    return matching_patients(patients_in_scope(user), q=q, birth_date=birth_date)


def matching_patients(
    patients: QuerySet[Patient], *, q: str = "", birth_date: date | None = None
) -> QuerySet[Patient]:
    """`patients` filtered by the words of `q` and the birth date, as `search_patients` says."""
    patients = patients.annotate(compact_name=Replace("search_key", Value(" "), Value("")))
    try:
        # An INS is often typed in groups ("2 85 03 75 …"): taken whole before the split.
        ins = validate_nir(q)
    except InvalidIdentifier:
        ins = None
    if ins is not None:
        patients = patients.filter(ins=ins)
    for word in [] if ins else _IPP_LABEL.sub(r"\1", q).split():
        patients = patients.filter(_word_condition(word))
    if birth_date is not None:
        patients = patients.filter(birth_date=birth_date)
    return patients.order_by("search_key", "birth_date", "pk")


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


# How the timeline may be ordered: the form's choice → the ORM's order, ties broken the same
# way every time so that "previous" and "next" in the viewer follow the list exactly.
TIMELINE_ORDERS: dict[str, tuple[str, ...]] = {
    "-date": ("-clinical_date", "-received_at", "pk"),
    "date": ("clinical_date", "received_at", "pk"),
    "kind": ("kind", "-clinical_date", "-received_at", "pk"),
}


@dataclass(frozen=True)
class TimelineFilter:
    kinds: tuple[str, ...] = ()
    text: str = ""
    date_from: date | None = None
    date_to: date | None = None
    sort: str = "-date"


def timeline(patient: Patient, filters: TimelineFilter) -> QuerySet[Document]:
    documents = Document.objects.filter(patient=patient)
    if filters.kinds:
        documents = documents.filter(kind__in=filters.kinds)
    for word in filters.text.split():
        # Every word somewhere in what the list shows of a document (title, author, source).
        documents = documents.filter(
            Q(title__icontains=word) | Q(author__icontains=word) | Q(source_system__icontains=word)
        )
    if filters.date_from is not None:
        documents = documents.filter(clinical_date__gte=filters.date_from)
    if filters.date_to is not None:
        documents = documents.filter(clinical_date__lte=filters.date_to)
    return documents.order_by(*TIMELINE_ORDERS.get(filters.sort, TIMELINE_ORDERS["-date"]))


@dataclass(frozen=True)
class Neighbours:
    """Where a document sits in its patient's (filtered, ordered) timeline."""

    previous_id: str | None = None
    next_id: str | None = None
    position: int | None = None  # 1-based; None when the list does not hold the document
    total: int = 0


def neighbours(document: Document, filters: TimelineFilter) -> Neighbours:
    """The documents before and after `document` in its patient's timeline under `filters`.

    One query for the ids only (a patient has hundreds of documents, not millions): the
    order is the timeline's own, ties included, so the viewer cannot disagree with the list.
    """
    ids = list(timeline(document.patient, filters).values_list("pk", flat=True))
    try:
        index = ids.index(document.pk)
    except ValueError:
        return Neighbours(total=len(ids))
    return Neighbours(
        previous_id=ids[index - 1] if index > 0 else None,
        next_id=ids[index + 1] if index + 1 < len(ids) else None,
        position=index + 1,
        total=len(ids),
    )
