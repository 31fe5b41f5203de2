"""A deterministic synthetic clinic: patients, doctors, care relationships and documents.

Pure Python, no database: the demo seeder turns a `Clinic` into rows and ingested PDFs. The
same seed gives the same clinic, field for field, whatever today's date: every date derives
from `REFERENCE_DATE`, and all randomness comes from one seeded `random.Random` plus a seeded
Faker (French names only; addresses come from real communes listed below, because Faker's
French cities are invented).

Care is laid out so the demo can show authorisation at work: the GP, the cardiologist and the
radiologist each follow a different, partly overlapping set of patients, a few relationships
have expired, and a good share of patients have no relationship at all, for break-the-glass.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import date, timedelta
from typing import Literal

from faker import Faker

from vigie.records.identifiers import nir_key
from vigie.synthetic import certificates, imaging, lab, letters, people, prescriptions
from vigie.synthetic.payloads import Payload
from vigie.synthetic.people import Practitioner, Sex, Subject

# Clinical dates fall in the three years up to this day; never `date.today()`, so the clinic
# is identical on every run.
REFERENCE_DATE = date(2026, 11, 28)
HISTORY_DAYS = 3 * 365

Kind = Literal[
    "lab_result",
    "imaging_report",
    "consultation_letter",
    "discharge_summary",
    "prescription",
    "other",
]
KINDS: tuple[Kind, ...] = (
    "lab_result",
    "imaging_report",
    "consultation_letter",
    "discharge_summary",
    "prescription",
    "other",
)
Role = Literal["treating", "referring", "consulting"]

# Where documents come from, as the intake adapters will name them.
SOURCE_LAB = "LABO-BIOMED"
SOURCE_PACS = "PACS-RADIO"
SOURCE_DPI = "DPI-CLINIQUE"
SOURCE_MAIL = "MSSANTE"  # letters from practitioners outside the clinic (secure messaging)
_ID_PREFIX = {SOURCE_LAB: "LAB", SOURCE_PACS: "IMG", SOURCE_DPI: "DPI", SOURCE_MAIL: "MSS"}


@dataclass(frozen=True)
class PatientSpec:
    ipp: str
    ins: str | None  # 15-character NIR with its key; None for about one patient in seven
    family_name: str
    given_names: str  # space-separated, as the INS lists them
    birth_date: date
    sex: Sex
    address_line: str
    postal_code: str
    city: str

    @property
    def first_given_name(self) -> str:
        return self.given_names.split(" ")[0]

    def age_on(self, day: date) -> int:
        return people.age_on(self.birth_date, day)


@dataclass(frozen=True)
class DoctorSpec:
    username: str
    family_name: str
    given_name: str
    specialty: str


@dataclass(frozen=True)
class RelationshipSpec:
    doctor_username: str
    patient_ipp: str
    role: Role
    valid_from: date
    valid_until: date | None  # None: open-ended

    def active_on(self, day: date) -> bool:
        return self.valid_from <= day and (self.valid_until is None or day <= self.valid_until)


@dataclass(frozen=True)
class DocumentSpec:
    patient_ipp: str
    kind: Kind
    title: str
    clinical_date: date
    author: str
    source_system: str
    external_id: str  # unique per source system, e.g. "LAB-2025-00042"
    payload: Payload  # everything the renderer draws; no randomness left for render time

    def render_pdf(self, patient: PatientSpec) -> bytes:
        # Imported here: building a clinic should not pay for importing reportlab.
        from vigie.synthetic.pdf import render_document

        return render_document(self, patient)


@dataclass(frozen=True)
class Clinic:
    patients: tuple[PatientSpec, ...]
    doctors: tuple[DoctorSpec, ...]
    admins: tuple[str, ...]  # usernames of the IT administrators
    auditors: tuple[str, ...]  # usernames of the DPO / auditors who read the audit log
    relationships: tuple[RelationshipSpec, ...]
    documents: tuple[DocumentSpec, ...]

    def patient(self, ipp: str) -> PatientSpec:
        for patient in self.patients:
            if patient.ipp == ipp:
                return patient
        raise KeyError(ipp)

    def documents_of(self, ipp: str) -> tuple[DocumentSpec, ...]:
        return tuple(d for d in self.documents if d.patient_ipp == ipp)

    def patients_of(self, username: str, on: date = REFERENCE_DATE) -> frozenset[str]:
        """IPPs of the patients `username` has a relationship with, active on `on`."""
        return frozenset(
            r.patient_ipp
            for r in self.relationships
            if r.doctor_username == username and r.active_on(on)
        )


# --- the staff ------------------------------------------------------------------------------

GP = DoctorSpec("dr.martin", "Martin", "Sophie", "Médecine générale")
CARDIOLOGIST = DoctorSpec("dr.lefebvre", "Lefebvre", "Antoine", "Cardiologie")
RADIOLOGIST = DoctorSpec("dr.nguyen", "Nguyen", "Hélène", "Radiologie")
DOCTORS = (GP, CARDIOLOGIST, RADIOLOGIST)
ADMINS = ("admin.it",)
AUDITORS = ("dpo.dupont",)
_PRACTITIONERS = {
    GP.username: people.practitioner("Sophie", "Martin", GP.specialty, "00100234", f=True),
    CARDIOLOGIST.username: people.practitioner(
        "Antoine", "Lefebvre", CARDIOLOGIST.specialty, "00200345", f=False
    ),
    RADIOLOGIST.username: people.practitioner(
        "Hélène", "Nguyen", RADIOLOGIST.specialty, "00300456", f=True
    ),
}

# --- where patients live and were born ----------------------------------------------------------

# Real communes around the clinic (Lyon), with a weight for how many patients live there.
_HOMES: tuple[tuple[str, str, int], ...] = (
    ("69001", "Lyon", 3),
    ("69002", "Lyon", 3),
    ("69003", "Lyon", 6),
    ("69004", "Lyon", 3),
    ("69005", "Lyon", 3),
    ("69006", "Lyon", 4),
    ("69007", "Lyon", 5),
    ("69008", "Lyon", 6),
    ("69009", "Lyon", 3),
    ("69100", "Villeurbanne", 7),
    ("69200", "Vénissieux", 4),
    ("69500", "Bron", 4),
    ("69300", "Caluire-et-Cuire", 2),
    ("69600", "Oullins", 2),
    ("69800", "Saint-Priest", 3),
    ("69120", "Vaulx-en-Velin", 3),
    ("69130", "Écully", 1),
    ("69150", "Décines-Charpieu", 2),
    ("69160", "Tassin-la-Demi-Lune", 1),
    ("69330", "Meyzieu", 2),
    ("69140", "Rillieux-la-Pape", 2),
    ("69400", "Villefranche-sur-Saône", 1),
)
_STREETS = (
    "rue Victor Hugo",
    "avenue Jean Jaurès",
    "rue de la République",
    "cours Gambetta",
    "rue Garibaldi",
    "avenue Berthelot",
    "rue Paul Bert",
    "boulevard des Belges",
    "rue Pasteur",
    "avenue des Frères Lumière",
    "rue Servient",
    "grande rue de la Croix-Rousse",
    "rue de Marseille",
    "avenue Félix Faure",
    "rue Anatole France",
    "chemin des Vignes",
    "allée des Tilleuls",
    "impasse des Lilas",
    "rue du Professeur Rochaix",
    "rue Édouard Herriot",
    "montée de Choulans",
    "rue Saint-Georges",
    "avenue Rockefeller",
    "rue des Charmettes",
    "place Jean Macé",
    "rue Masséna",
    "cours Émile Zola",
    "rue Francis de Pressensé",
    "avenue Franklin Roosevelt",
    "rue du Château",
)
# Birthplaces as the 5 characters the NIR carries: INSEE commune code for France (Lyon's
# arrondissements, Paris's, other cities, overseas departments) and 99 + country for abroad.
# Corsica (2A/2B) is left out: its code depends on the birth year, a detail the demo can skip.
_BIRTHPLACES: tuple[tuple[str, int], ...] = (
    ("69383", 6),  # Lyon 3e
    ("69388", 5),  # Lyon 8e
    ("69387", 3),  # Lyon 7e
    ("69384", 2),  # Lyon 4e
    ("69266", 4),  # Villeurbanne
    ("69259", 2),  # Vénissieux
    ("69264", 1),  # Villefranche-sur-Saône
    ("38185", 2),  # Grenoble
    ("42218", 2),  # Saint-Étienne
    ("01053", 1),  # Bourg-en-Bresse
    ("75115", 2),  # Paris 15e
    ("75112", 1),  # Paris 12e
    ("13208", 1),  # Marseille 8e
    ("31555", 1),  # Toulouse
    ("59350", 1),  # Lille
    ("67482", 1),  # Strasbourg
    ("63113", 1),  # Clermont-Ferrand
    ("21231", 1),  # Dijon
    ("97411", 1),  # Saint-Denis (La Réunion)
    ("97209", 1),  # Fort-de-France
    ("99352", 2),  # Algérie
    ("99350", 1),  # Maroc
    ("99351", 1),  # Tunisie
    ("99139", 1),  # Portugal
    ("99127", 1),  # Italie
)

# Age bands and weights: mostly adults, a clinic's usual skew towards older patients.
_AGE_BANDS: tuple[tuple[int, int, int], ...] = (
    (1, 14, 8),
    (15, 29, 10),
    (30, 44, 15),
    (45, 59, 22),
    (60, 74, 26),
    (75, 95, 19),
)


def _years_before(day: date, years: int) -> date:
    try:
        return day.replace(year=day.year - years)
    except ValueError:  # 29 February in a non-leap year
        return day.replace(year=day.year - years, day=28)


def _make_nir(rng: random.Random, sex: Sex, birth: date, taken: set[str]) -> str:
    place = rng.choices([p for p, _ in _BIRTHPLACES], weights=[w for _, w in _BIRTHPLACES])[0]
    while True:
        body = f"{1 if sex == 'M' else 2}{birth:%y}{birth:%m}{place}{rng.randint(1, 999):03d}"
        if body not in taken:
            taken.add(body)
            return f"{body}{nir_key(body):02d}"


def _make_patients(rng: random.Random, fake: Faker, count: int) -> list[PatientSpec]:
    ipps = sorted(rng.sample(range(1_000_000, 10_000_000), count))
    taken_nir: set[str] = set()
    used_names: set[str] = set()
    patients = []
    for number in ipps:
        sex: Sex = rng.choice(("F", "M"))
        low, high, _ = rng.choices(_AGE_BANDS, weights=[w for *_, w in _AGE_BANDS])[0]
        age = rng.randint(low, high)
        # Any birthday such that the patient is exactly `age` on the reference date.
        latest = _years_before(REFERENCE_DATE, age)
        earliest = _years_before(REFERENCE_DATE, age + 1) + timedelta(days=1)
        birth = earliest + timedelta(days=rng.randint(0, (latest - earliest).days))
        family = fake.last_name()
        for _ in range(20):  # a few homonyms are realistic, a demo full of them is confusing
            if family not in used_names:
                break
            family = fake.last_name()
        used_names.add(family)
        first = fake.first_name_female if sex == "F" else fake.first_name_male
        given = [first()]
        if rng.random() < 0.35:
            second = first()
            if second != given[0]:
                given.append(second)
        postal_code, city, _ = rng.choices(_HOMES, weights=[w for *_, w in _HOMES])[0]
        number_in_street = f"{rng.randint(1, 140)}{' bis' if rng.random() < 0.05 else ''}"
        address = f"{number_in_street} {rng.choice(_STREETS)}"
        if rng.random() < 0.25:
            address = f"{address}, {rng.choice(('Bât. ', 'Apt ', 'Résidence les Cèdres, apt '))}{rng.randint(2, 48)}"
        ins = _make_nir(rng, sex, birth, taken_nir) if rng.random() < 0.85 else None
        patients.append(
            PatientSpec(
                ipp=f"IPP{number:07d}",
                ins=ins,
                family_name=family,
                given_names=" ".join(given),
                birth_date=birth,
                sex=sex,
                address_line=address,
                postal_code=postal_code,
                city=city,
            )
        )
    return patients


# --- care relationships -----------------------------------------------------------------------

# Segments of the patient list, sized for 60 patients and scaled to other counts: which of our
# three doctors follow each segment. GP 25 patients, cardiologist 15 (8 shared with the GP),
# radiologist 15 (9 shared with the GP, 8 with the cardiologist); the rest have no one.
_CARDIO_SEGMENTS: tuple[tuple[tuple[str, ...], int], ...] = (
    (("gp", "cardio", "radio"), 4),
    (("gp", "cardio"), 4),
    (("cardio",), 3),
    (("cardio", "radio"), 4),
)
_OTHER_SEGMENTS: tuple[tuple[tuple[str, ...], int], ...] = (
    (("gp", "radio"), 5),
    (("gp",), 12),
    (("radio",), 2),
)
_DOCTOR_OF = {"gp": GP, "cardio": CARDIOLOGIST, "radio": RADIOLOGIST}


def _assign_care(
    rng: random.Random, patients: Sequence[PatientSpec]
) -> tuple[dict[str, tuple[str, ...]], list[RelationshipSpec]]:
    scale = len(patients) / 60
    older = [p for p in patients if p.age_on(REFERENCE_DATE) >= 40]
    younger = [p for p in patients if p.age_on(REFERENCE_DATE) < 40]
    rng.shuffle(older)
    rng.shuffle(younger)
    # Cardiology patients are drawn from the over-40s first: a cardiologist's patient list.
    pool = older + younger
    care: dict[str, tuple[str, ...]] = {p.ipp: () for p in patients}
    position = 0
    for segments in (_CARDIO_SEGMENTS, _OTHER_SEGMENTS):
        if segments is _OTHER_SEGMENTS:
            rest = pool[position:]
            rng.shuffle(rest)
            pool = pool[:position] + rest
        for who, size in segments:
            for patient in pool[position : position + max(1, round(size * scale))]:
                care[patient.ipp] = who
            position += max(1, round(size * scale))

    relationships: list[RelationshipSpec] = []
    for patient in patients:
        for key in care[patient.ipp]:
            if key == "gp":
                role: Role = "treating"
            elif key == "radio":
                role = "consulting"
            elif care[patient.ipp] == ("cardio",):
                role = "treating"  # followed for the heart only, by the cardiologist
            elif "gp" in care[patient.ipp]:
                role = "consulting"  # the GP asked for the cardiologist's opinion
            else:
                role = "referring"  # the cardiologist sends them to imaging
            relationships.append(
                RelationshipSpec(
                    _DOCTOR_OF[key].username,
                    patient.ipp,
                    role,
                    _relationship_start(rng, patient),
                    None,
                )
            )
    # Two relationships that have ended, on patients nobody follows any more: the demo shows
    # that access stops with them (and that break-the-glass is then the only way in).
    unfollowed = [p for p in pool[position:] if p.age_on(REFERENCE_DATE) >= 18]
    ended: tuple[tuple[DoctorSpec, Role], ...] = ((CARDIOLOGIST, "consulting"), (GP, "treating"))
    for patient, (doctor, role) in zip(unfollowed, ended, strict=False):
        start = REFERENCE_DATE - timedelta(days=rng.randint(600, 900))
        end = REFERENCE_DATE - timedelta(days=rng.randint(60, 240))
        relationships.append(RelationshipSpec(doctor.username, patient.ipp, role, start, end))
    return care, relationships


def _relationship_start(rng: random.Random, patient: PatientSpec) -> date:
    start = REFERENCE_DATE - timedelta(days=rng.randint(90, 6 * 365))
    return max(start, patient.birth_date)


# --- documents --------------------------------------------------------------------------------

_KIND_WEIGHTS: dict[Kind, float] = {
    "lab_result": 36,
    "imaging_report": 14,
    "consultation_letter": 14,
    "discharge_summary": 7,
    "prescription": 18,
    "other": 7,
}


@dataclass(frozen=True)
class _PatientContext:
    patient: PatientSpec
    care: tuple[str, ...]
    profile: people.ClinicalProfile
    family_doctor: Practitioner  # our GP, or an outside GP for patients she does not follow

    def subject(self, day: date) -> Subject:
        return Subject(
            sex=self.patient.sex,
            given_name=self.patient.first_given_name,
            family_name=self.patient.family_name,
            age=self.patient.age_on(day),
            profile=self.profile,
        )


def _kind_for(rng: random.Random, ctx: _PatientContext, age: int) -> Kind:
    weights = dict(_KIND_WEIGHTS)
    if age < 15:
        weights["discharge_summary"] = 0
        weights["imaging_report"] = 5
    if "radio" in ctx.care:
        weights["imaging_report"] *= 2
    if "cardio" in ctx.care:
        weights["consultation_letter"] *= 1.6
    kinds = list(weights)
    return rng.choices(kinds, weights=[weights[k] for k in kinds])[0]


def _letter_author(rng: random.Random, ctx: _PatientContext, age: int) -> Practitioner:
    if "cardio" in ctx.care and rng.random() < 0.7:
        return _PRACTITIONERS[CARDIOLOGIST.username]
    if "gp" in ctx.care and rng.random() < 0.3:
        return _PRACTITIONERS[GP.username]  # a referral letter from our GP
    if age < 15:
        return people.SPECIALISTS["Pédiatrie"]
    p = ctx.profile
    options = ["Rhumatologie"] if age >= 50 else []
    if p.has("diabete") or p.has("hypothyroidie"):
        options.append("Endocrinologie")
    if p.has("bpco") or p.has("asthme") or p.smoker:
        options.append("Pneumologie")
    if any(p.has(c) for c in ("hta", "fa", "ic", "coronaire")):
        options.append("Cardiologie")
    return people.SPECIALISTS[rng.choice(options or ["Rhumatologie", "Pneumologie"])]


def _make_document(rng: random.Random, ctx: _PatientContext, day: date) -> DocumentSpec:
    subject = ctx.subject(day)
    kind = _kind_for(rng, ctx, subject.age)
    cardiologist = _PRACTITIONERS[CARDIOLOGIST.username]
    # Who asked for tests: mostly the family doctor, sometimes our cardiologist.
    requester = cardiologist if "cardio" in ctx.care and rng.random() < 0.3 else ctx.family_doctor
    payload: Payload
    source = SOURCE_DPI
    if kind == "lab_result":
        panel: Literal["cbc", "biochemistry"] = "cbc" if rng.random() < 0.55 else "biochemistry"
        payload = lab.make_lab_report(rng, subject, day, panel, requester)
        author, source = payload.biologist, SOURCE_LAB
    elif kind == "imaging_report":
        # Our radiologist reads the exams of the patients she is in charge of; colleagues
        # read the others, so she never authors a report she could not open.
        radiologist = (
            _PRACTITIONERS[RADIOLOGIST.username]
            if "radio" in ctx.care
            else rng.choice(people.OTHER_RADIOLOGISTS)
        )
        payload = imaging.make_imaging_report(rng, subject, day, requester, radiologist)
        author, source = radiologist, SOURCE_PACS
    elif kind == "consultation_letter":
        author = _letter_author(rng, ctx, subject.age)
        if author.specialty == "Médecine générale":
            recipient = cardiologist if "cardio" in ctx.care else people.SPECIALISTS["Cardiologie"]
        else:
            recipient = ctx.family_doctor
        payload = letters.make_consultation_letter(rng, subject, day, author, recipient)
    elif kind == "discharge_summary":
        writer = cardiologist if "cardio" in ctx.care and rng.random() < 0.6 else None
        payload = letters.make_discharge_summary(rng, subject, day, writer, ctx.family_doctor)
        author = payload.author
    elif kind == "prescription":
        prescriber = requester
        payload = prescriptions.make_prescription(rng, subject, prescriber)
        author = prescriber
    else:
        author = ctx.family_doctor
        payload = certificates.make_certificate(rng, subject, author, ctx.patient.birth_date)
    if source == SOURCE_DPI and author in people.OUTSIDE_GPS:
        source = SOURCE_MAIL
    return DocumentSpec(
        patient_ipp=ctx.patient.ipp,
        kind=kind,
        title=payload.title,
        clinical_date=day,
        author=author.name,
        source_system=source,
        external_id="",  # numbered once all documents are sorted by date
        payload=payload,
    )


def _make_documents(
    rng: random.Random, contexts: Sequence[_PatientContext], count: int
) -> list[DocumentSpec]:
    # Two documents each, then the rest to whoever is followed more, older or more ill.
    per_patient = dict.fromkeys(range(len(contexts)), 2)
    weights = [
        1
        + (1.5 if c.care else 0)
        + c.patient.age_on(REFERENCE_DATE) / 40
        + 0.5 * len(c.profile.conditions)
        for c in contexts
    ]
    for index in rng.choices(range(len(contexts)), weights=weights, k=count - 2 * len(contexts)):
        per_patient[index] += 1
    window_start = REFERENCE_DATE - timedelta(days=HISTORY_DAYS)
    documents = []
    for index, ctx in enumerate(contexts):
        # From the first birthday on, so that no document speaks of a patient "aged 0 years".
        first_day = max(window_start, _years_before(ctx.patient.birth_date, -1) + timedelta(days=1))
        span = (REFERENCE_DATE - first_day).days
        for _ in range(per_patient[index]):
            day = first_day + timedelta(days=rng.randint(0, span))
            documents.append(_make_document(rng, ctx, day))
    documents.sort(key=lambda d: (d.clinical_date, d.patient_ipp, d.kind, d.title))
    sequence: dict[str, int] = {}
    numbered = []
    for document in documents:
        sequence[document.source_system] = sequence.get(document.source_system, 0) + 1
        prefix = _ID_PREFIX[document.source_system]
        external_id = (
            f"{prefix}-{document.clinical_date.year}-{sequence[document.source_system]:05d}"
        )
        numbered.append(replace(document, external_id=external_id))
    return numbered


def build_clinic(seed: int = 2026, patients: int = 60, documents: int = 320) -> Clinic:
    """The demo clinic for `seed`: same arguments, same clinic (equal field for field)."""
    if patients < 10:
        raise ValueError("the demo clinic needs at least 10 patients to lay out care")
    if documents < 2 * patients:
        raise ValueError("the demo clinic needs at least 2 documents per patient")
    rng = random.Random(seed)
    fake = Faker("fr_FR")
    fake.seed_instance(seed)
    roster = _make_patients(rng, fake, patients)
    care, relationships = _assign_care(rng, roster)
    contexts = []
    for patient in roster:
        age = patient.age_on(REFERENCE_DATE)
        profile = people.make_profile(rng, age, patient.sex, cardiac="cardio" in care[patient.ipp])
        family_doctor = (
            _PRACTITIONERS[GP.username]
            if "gp" in care[patient.ipp]
            else rng.choice(people.OUTSIDE_GPS)
        )
        contexts.append(_PatientContext(patient, care[patient.ipp], profile, family_doctor))
    return Clinic(
        patients=tuple(roster),
        doctors=DOCTORS,
        admins=ADMINS,
        auditors=AUDITORS,
        relationships=tuple(relationships),
        documents=tuple(_make_documents(rng, contexts, documents)),
    )
