"""What the demo documents say: lab values and medical French text, drawn from a seeded PRNG.

Everything here is decided when the clinic is built, not when a PDF is drawn, so a
`DocumentSpec` fully describes its document and `pdfs.py` is pure layout. Every function takes
the caller's `random.Random`: the same seed gives the same values, sentence by sentence.

The text only has to be plausible to a French physician skimming a demo, not clinically
exhaustive; it is still kept coherent (a diabetic patient's HbA1c is high, a patient with a
cardiac history gets cardiology letters, haematology indices are computed from one another).
Strings avoid characters outside Windows-1252, the encoding of reportlab's built-in Helvetica.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Literal

Sex = Literal["F", "M"]

MONTHS_FR = (
    "janvier",
    "février",
    "mars",
    "avril",
    "mai",
    "juin",
    "juillet",
    "août",
    "septembre",
    "octobre",
    "novembre",
    "décembre",
)


# --- small French formatting helpers (shared with pdfs.py) ---------------------------------


def fr_number(value: float, decimals: int) -> str:
    """French decimal comma: 13.4 -> "13,4"."""
    return f"{value:.{decimals}f}".replace(".", ",")


def fr_date(day: date) -> str:
    return day.strftime("%d/%m/%Y")


def fr_long_date(day: date) -> str:
    """ "1er mars 2026", the way a letter is dated."""
    number = "1er" if day.day == 1 else str(day.day)
    return f"{number} {MONTHS_FR[day.month - 1]} {day.year}"


def age_on(birth: date, day: date) -> int:
    return day.year - birth.year - ((day.month, day.day) < (birth.month, birth.day))


def luhn_complete(body: str) -> str:
    """Append the Luhn check digit, as RPPS and FINESS numbers carry one."""
    total = 0
    for index, char in enumerate(reversed(body)):
        digit = int(char)
        if index % 2 == 0:  # doubled positions, counted from the future check digit
            digit *= 2
            if digit > 9:
                digit -= 9
        total += digit
    return body + str((10 - total % 10) % 10)


# --- people who sign documents ---------------------------------------------------------------


@dataclass(frozen=True)
class Practitioner:
    """Whoever signs or prescribes: one of the portal's doctors or an outside colleague."""

    given_name: str
    family_name: str
    specialty: str
    rpps: str
    feminine: bool = False
    practice: str | None = None  # "street, postcode city" of a private practice; None: clinic

    @property
    def name(self) -> str:
        """ "Dr Sophie Martin": the `author` string of a document."""
        return f"Dr {self.given_name} {self.family_name}"

    @property
    def formal_name(self) -> str:
        """ "Dr Sophie MARTIN": letterheads and signatures, family name in capitals."""
        return f"Dr {self.given_name} {self.family_name.upper()}"


def practitioner(
    given: str, family: str, specialty: str, serial: str, *, f: bool, practice: str | None = None
) -> Practitioner:
    # RPPS numbers are 11 digits starting with 10 and ending with a Luhn key; these are
    # well-formed but fictitious (the serial is ours).
    rpps = luhn_complete("10" + serial)
    return Practitioner(given, family, specialty, rpps, feminine=f, practice=practice)


BIOLOGISTS = (
    practitioner("Isabelle", "Roux", "Biologie médicale", "00412873", f=True),
    practitioner("Karim", "Benali", "Biologie médicale", "00538214", f=False),
)
OTHER_RADIOLOGISTS = (
    practitioner("Paul", "Girard", "Radiologie", "00627391", f=False),
    practitioner("Anne-Sophie", "Leroy", "Radiologie", "00718264", f=True),
)
# Outside general practitioners: the médecin traitant of patients not followed by our GP.
OUTSIDE_GPS = (
    practitioner(
        "Pierre",
        "Lambert",
        "Médecine générale",
        "00813572",
        f=False,
        practice="14 rue Paul Bert, 69003 Lyon",
    ),
    practitioner(
        "Nathalie",
        "Rousseau",
        "Médecine générale",
        "00924681",
        f=True,
        practice="3 place de la Mairie, 69100 Villeurbanne",
    ),
    practitioner(
        "Hugo",
        "Blanc",
        "Médecine générale",
        "01035792",
        f=False,
        practice="52 avenue Jean Jaurès, 69200 Vénissieux",
    ),
)
SPECIALISTS = {
    "Médecine interne": practitioner("Marc", "Fontaine", "Médecine interne", "01146803", f=False),
    "Pneumologie": practitioner("Claire", "Dubois", "Pneumologie", "01257914", f=True),
    "Chirurgie viscérale": practitioner(
        "Thomas", "Mercier", "Chirurgie viscérale et digestive", "01368025", f=False
    ),
    "Endocrinologie": practitioner(
        "Élodie", "Garnier", "Endocrinologie-diabétologie", "01479136", f=True
    ),
    "Rhumatologie": practitioner("Nicolas", "Faure", "Rhumatologie", "01580247", f=False),
    "Pédiatrie": practitioner("Camille", "Perrin", "Pédiatrie", "01691358", f=True),
    "Cardiologie": practitioner("Vincent", "Carpentier", "Cardiologie", "01702469", f=False),
}


# --- the patient's medical background --------------------------------------------------------


@dataclass(frozen=True)
class Medication:
    """One line of an ordonnance: drug (INN, as French law asks), how to take it, how long."""

    drug: str
    dosage: str
    duration: str = ""

    @property
    def molecule(self) -> str:
        return self.drug.split(" ")[0]


@dataclass(frozen=True)
class _Condition:
    label: str
    treatment: tuple[Medication, ...]
    ald: bool  # "affection de longue durée": prescribed on the upper half of a bizone form


_CONDITIONS: dict[str, _Condition] = {
    "hta": _Condition(
        "Hypertension artérielle",
        (Medication("Amlodipine 5 mg, comprimé", "1 comprimé le matin"),),
        ald=False,
    ),
    "diabete": _Condition(
        "Diabète de type 2",
        (
            Medication(
                "Metformine 1000 mg, comprimé pelliculé",
                "1 comprimé matin et soir au milieu des repas",
            ),
        ),
        ald=True,
    ),
    "dyslipidemie": _Condition(
        "Dyslipidémie",
        (Medication("Atorvastatine 20 mg, comprimé", "1 comprimé le soir"),),
        ald=False,
    ),
    "fa": _Condition(
        "Fibrillation atriale paroxystique",
        (
            Medication("Apixaban 5 mg, comprimé", "1 comprimé matin et soir"),
            Medication("Bisoprolol 2,5 mg, comprimé", "1 comprimé le matin"),
        ),
        ald=True,
    ),
    "ic": _Condition(
        "Insuffisance cardiaque à fraction d'éjection altérée",
        (
            Medication("Furosémide 40 mg, comprimé", "1 comprimé le matin"),
            Medication("Sacubitril/valsartan 49 mg/51 mg, comprimé", "1 comprimé matin et soir"),
            Medication("Bisoprolol 5 mg, comprimé", "1 comprimé le matin"),
        ),
        ald=True,
    ),
    "coronaire": _Condition(
        "Cardiopathie ischémique, angioplastie de l'IVA avec pose d'un stent actif",
        (
            Medication("Acide acétylsalicylique 75 mg, sachet", "1 sachet à midi"),
            Medication("Atorvastatine 80 mg, comprimé", "1 comprimé le soir"),
        ),
        ald=True,
    ),
    "hypothyroidie": _Condition(
        "Hypothyroïdie (thyroïdite de Hashimoto)",
        (Medication("Lévothyroxine 75 µg, comprimé", "1 comprimé le matin à jeun"),),
        ald=False,
    ),
    "bpco": _Condition(
        "BPCO stade GOLD 2",
        (Medication("Tiotropium 2,5 µg, solution à inhaler", "2 bouffées le matin"),),
        ald=False,
    ),
    "asthme": _Condition(
        "Asthme allergique",
        (
            Medication(
                "Budésonide/formotérol 200/6 µg, poudre pour inhalation",
                "1 inhalation matin et soir",
            ),
        ),
        ald=False,
    ),
    "irc": _Condition("Insuffisance rénale chronique stade 3a", (), ald=False),
    "rgo": _Condition(
        "Reflux gastro-oesophagien",
        (Medication("Oméprazole 20 mg, gélule", "1 gélule le matin à jeun"),),
        ald=False,
    ),
    "arthrose": _Condition(
        "Gonarthrose bilatérale",
        (Medication("Paracétamol 1 g, comprimé", "1 comprimé jusqu'à 3 fois par jour si douleur"),),
        ald=False,
    ),
}
_CARDIAC = ("hta", "fa", "ic", "coronaire")


@dataclass(frozen=True)
class ClinicalProfile:
    """A patient's background, so that every document about them tells the same story."""

    conditions: tuple[str, ...]
    allergy: str | None
    smoker: bool
    weight_kg: int  # as an adult
    height_cm: int  # as an adult
    growth: float  # as a child: how many standard deviations above the average growth curve

    def history(self) -> tuple[str, ...]:
        lines = [_CONDITIONS[c].label for c in self.conditions]
        if self.smoker:
            lines.append("Tabagisme actif")
        return tuple(lines) or ("Pas d'antécédent médical notable",)

    def treatment(self) -> tuple[Medication, ...]:
        # One line per molecule: when two conditions call for the same drug (a statin for
        # dyslipidaemia and for coronary disease), the later, stronger dose wins.
        by_molecule: dict[str, Medication] = {}
        for condition in self.conditions:
            for medication in _CONDITIONS[condition].treatment:
                by_molecule.pop(medication.molecule, None)
                by_molecule[medication.molecule] = medication
        return tuple(by_molecule.values())

    def has(self, condition: str) -> bool:
        return condition in self.conditions

    @property
    def ald(self) -> bool:
        return any(_CONDITIONS[c].ald for c in self.conditions)

    @property
    def allergy_text(self) -> str:
        return self.allergy or "Pas d'allergie connue"


def make_profile(rng: random.Random, age: int, sex: Sex, *, cardiac: bool) -> ClinicalProfile:
    """Conditions by age, as in a general clinic; `cardiac` forces a cardiological history."""
    chosen: list[str] = []
    if age >= 18:
        # Rough prevalences that grow with age: enough variety for the demo, not epidemiology.
        old = min(1.0, max(0.0, (age - 30) / 50))
        odds = {
            "hta": 0.05 + 0.55 * old,
            "diabete": 0.02 + 0.2 * old,
            "dyslipidemie": 0.05 + 0.3 * old,
            "fa": 0.12 * old,
            "coronaire": (0.12 if sex == "M" else 0.05) * old,
            "ic": 0.06 * old,
            "hypothyroidie": 0.09 if sex == "F" else 0.02,
            "bpco": 0.08 * old,
            "asthme": 0.06,
            "irc": 0.12 * old,
            "rgo": 0.1,
            "arthrose": 0.25 * old,
        }
        chosen = [c for c, p in odds.items() if rng.random() < p]
        if cardiac and not any(c in chosen for c in _CARDIAC):
            chosen.append(rng.choice(("hta", "hta", "fa", "coronaire")))
        if "ic" in chosen and "fa" in chosen and rng.random() < 0.5:
            chosen.remove("fa")  # keeps the treatment list short enough for one page
    elif rng.random() < 0.12:
        chosen = ["asthme"]
    allergy = rng.choice(
        (None,) * 7 + ("Pénicillines (urticaire)", "Iode (réaction cutanée)", "Codéine")
    )
    smoker = age >= 18 and rng.random() < 0.22
    height = round(rng.gauss(176 if sex == "M" else 163, 7))
    bmi = min(38.0, max(18.5, rng.gauss(25.5 if chosen else 23.0, 3.2)))
    weight = round(bmi * (height / 100) ** 2)
    growth = max(-2.0, min(2.0, rng.gauss(0, 1)))
    return ClinicalProfile(tuple(chosen), allergy, smoker, weight, height, growth)


@dataclass(frozen=True)
class Subject:
    """The patient as documents see them on one day."""

    sex: Sex
    given_name: str
    family_name: str
    age: int
    profile: ClinicalProfile

    @property
    def child(self) -> bool:
        return self.age < 15

    @property
    def height_cm(self) -> int:
        if self.age >= 16:
            return self.profile.height_cm
        # A rough average growth curve, shifted by the child's own percentile: enough for a
        # weight printed on a paediatric prescription to match the age.
        average = 75 + 12 * (self.age - 1) if self.age <= 2 else 87 + 6.3 * (self.age - 2)
        return round(average * (1 + 0.04 * self.profile.growth))

    @property
    def weight_kg(self) -> int:
        if self.age >= 16:
            return self.profile.weight_kg
        average = 2 * self.age + 8 if self.age <= 10 else 28 + 5 * (self.age - 10)
        return round(average * (1 + 0.1 * self.profile.growth))

    @property
    def e(self) -> str:
        """Feminine agreement suffix: "âgé" + e."""
        return "e" if self.sex == "F" else ""

    @property
    def civility(self) -> str:
        return "Madame" if self.sex == "F" else "Monsieur"

    @property
    def short_civility(self) -> str:
        return "Mme" if self.sex == "F" else "M."

    @property
    def designation(self) -> str:
        """How a letter names the patient the first time."""
        if self.child:
            return f"l'enfant {self.given_name} {self.family_name.upper()}"
        return f"{self.civility} {self.given_name} {self.family_name.upper()}"

    @property
    def subject_line(self) -> str:
        """ "Mme Marie DUPONT, 69 ans" (a child is named without civility)."""
        name = f"{self.given_name} {self.family_name.upper()}, {self.age_text}"
        return name if self.child else f"{self.short_civility} {name}"

    @property
    def age_text(self) -> str:
        return f"{self.age} an" if self.age == 1 else f"{self.age} ans"

    @property
    def patient_word(self) -> str:
        return "la patiente" if self.sex == "F" else "le patient"

    @property
    def pronoun(self) -> str:
        return "elle" if self.sex == "F" else "il"


# --- documents' payloads ----------------------------------------------------------------------


@dataclass(frozen=True)
class Section:
    """A titled block of prose (or of list items) in a letter, report or summary."""

    heading: str
    paragraphs: tuple[str, ...]
    as_list: bool = False


@dataclass(frozen=True)
class LabRow:
    label: str
    value: float
    unit: str
    low: float | None
    high: float | None
    decimals: int
    percent: float | None = None  # share of leucocytes, for the differential count

    @property
    def flag(self) -> str:
        """ "H" above the range, "L" below it, "" inside: what the lab prints in bold."""
        if self.high is not None and round(self.value, self.decimals) > self.high:
            return "H"
        if self.low is not None and round(self.value, self.decimals) < self.low:
            return "L"
        return ""

    @property
    def value_text(self) -> str:
        return fr_number(self.value, self.decimals)

    @property
    def range_text(self) -> str:
        if self.low is not None and self.high is not None:
            return f"{fr_number(self.low, self.decimals)} - {fr_number(self.high, self.decimals)}"
        if self.high is not None:
            return f"< {fr_number(self.high, self.decimals)}"
        if self.low is not None:
            return f"> {fr_number(self.low, self.decimals)}"
        return ""


@dataclass(frozen=True)
class LabSection:
    title: str
    rows: tuple[LabRow, ...]


@dataclass(frozen=True)
class LabReport:
    title: str
    request_number: str
    prescriber: Practitioner
    biologist: Practitioner
    sampled_at: datetime
    validated_at: datetime
    sections: tuple[LabSection, ...]
    comment: str | None


@dataclass(frozen=True)
class ImagingReport:
    title: str
    modality: str
    accession: str
    prescriber: Practitioner
    radiologist: Practitioner
    sections: tuple[Section, ...]  # indication, technique, résultats
    conclusion: tuple[str, ...]


@dataclass(frozen=True)
class Letter:
    """Consultation letter or discharge summary: a practitioner writing to a colleague."""

    title: str
    author: Practitioner
    recipient: Practitioner
    subject_line: str
    opening: str
    sections: tuple[Section, ...]
    closing: str
    service: str | None = None  # set for a hospital discharge summary
    admitted: date | None = None


@dataclass(frozen=True)
class Prescription:
    title: str
    prescriber: Practitioner
    ald_items: tuple[Medication, ...]  # upper half of a bizone form when non-empty
    items: tuple[Medication, ...]
    renewals: int
    weight_kg: int | None  # printed for children: doses are per kilogram


@dataclass(frozen=True)
class Certificate:
    title: str
    author: Practitioner
    paragraphs: tuple[str, ...]


Payload = LabReport | ImagingReport | Letter | Prescription | Certificate


# --- laboratory -----------------------------------------------------------------------------


def _draw(rng: random.Random, low: float, high: float, *, spread: float = 5.0) -> float:
    # Centred in the reference range with sd = width/spread: at 5, about 1 value in 80 falls
    # outside, so a 14-analyte count carries a stray flag now and then, as real ones do.
    return rng.gauss((low + high) / 2, (high - low) / spread)


_CbcScenario = Literal["normal", "iron", "infection", "thrombopenia", "macrocytosis", "eosino"]


def _cbc(rng: random.Random, s: Subject) -> tuple[tuple[LabSection, ...], str | None]:
    scenario: _CbcScenario = rng.choices(
        ("normal", "iron", "infection", "thrombopenia", "macrocytosis", "eosino"),
        weights=(70, 9 if s.sex == "F" else 4, 10, 4, 0 if s.child else 4, 4),
    )[0]
    if s.child:
        rbc_r, hb_r, hct_r, mcv_r, wbc_r = (
            (3.9, 5.3),
            (11.0, 14.5),
            (33.0, 43.0),
            (73, 90),
            (5, 14.5),
        )
    elif s.sex == "F":
        rbc_r, hb_r, hct_r, mcv_r, wbc_r = (
            (3.8, 5.1),
            (12.0, 15.5),
            (36.0, 46.0),
            (80, 100),
            (4, 10),
        )
    else:
        rbc_r, hb_r, hct_r, mcv_r, wbc_r = (
            (4.5, 5.7),
            (13.0, 17.0),
            (40.0, 52.0),
            (80, 100),
            (4, 10),
        )

    # Draw red-cell count, MCV and MCHC, then derive the rest, so the indices agree with each
    # other the way an analyser's do (Hct = RBC x MCV, Hb = Hct x MCHC, MCH = Hb / RBC).
    rbc = _draw(rng, *rbc_r, spread=6)
    mcv = _draw(rng, *mcv_r, spread=7)
    mchc = rng.gauss(33.6, 0.6)
    if scenario == "iron":
        rbc, mcv, mchc = rbc * rng.uniform(0.85, 0.97), rng.uniform(66, 77), rng.uniform(29.5, 31.5)
    elif scenario == "macrocytosis":
        rbc, mcv = rbc * rng.uniform(0.8, 0.92), rng.uniform(101, 109)
    hct = rbc * mcv / 10
    hb = hct * mchc / 100
    mch = hb * 10 / rbc

    wbc = _draw(rng, *wbc_r, spread=6)
    shares = {
        "neutro": rng.gauss(40 if s.child else 60, 6),
        "eos": abs(rng.gauss(2.5, 1.2)),
        "baso": abs(rng.gauss(0.5, 0.25)),
        "lympho": rng.gauss(48 if s.child else 30, 5),
        "mono": rng.gauss(7, 1.5),
    }
    pinned: tuple[str, float] | None = None
    if scenario == "infection":
        wbc = rng.uniform(11.5, 19.5)
        pinned = ("neutro", rng.uniform(78, 88))
    elif scenario == "eosino":
        pinned = ("eos", rng.uniform(8, 14))
    if pinned is not None:
        # The scenario fixes one share; the others shrink to fill the rest of 100 %.
        key, share = pinned
        others = sum(v for k, v in shares.items() if k != key)
        shares = {k: share if k == key else v * (100 - share) / others for k, v in shares.items()}
    total = sum(shares.values())
    pct = {k: v * 100 / total for k, v in shares.items()}
    plt = _draw(rng, 150, 400, spread=5)
    if scenario == "thrombopenia":
        plt = rng.uniform(62, 138)
    elif scenario == "iron" and rng.random() < 0.5:
        plt = rng.uniform(410, 480)  # reactive thrombocytosis goes with iron deficiency

    red = LabSection(
        "Hémogramme",
        (
            LabRow("Hématies", rbc, "T/L", *rbc_r, 2),
            LabRow("Hémoglobine", hb, "g/dL", *hb_r, 1),
            LabRow("Hématocrite", hct, "%", *hct_r, 1),
            LabRow("VGM", mcv, "fL", *mcv_r, 1),
            LabRow("TCMH", mch, "pg", 27 if not s.child else 24, 32, 1),
            LabRow("CCMH", mchc, "g/dL", 32, 36, 1),
            LabRow("Leucocytes", wbc, "G/L", *wbc_r, 2),
        ),
    )
    diff_ranges = {
        "neutro": ("Polynucléaires neutrophiles", 1.5 if s.child else 1.8, 7.5),
        "eos": ("Polynucléaires éosinophiles", 0.0, 0.5),
        "baso": ("Polynucléaires basophiles", 0.0, 0.1),
        "lympho": ("Lymphocytes", 1.0 if not s.child else 2.0, 4.0 if not s.child else 8.0),
        "mono": ("Monocytes", 0.2, 1.0),
    }
    diff = LabSection(
        "Formule leucocytaire",
        tuple(
            LabRow(label, wbc * pct[k] / 100, "G/L", low, high, 2, percent=pct[k])
            for k, (label, low, high) in diff_ranges.items()
        ),
    )
    platelets = LabSection("Plaquettes", (LabRow("Plaquettes", plt, "G/L", 150, 400, 0),))
    comments = {
        "iron": "Anémie microcytaire hypochrome : un bilan martial (ferritine) est conseillé.",
        "macrocytosis": "Macrocytose : dosage de la vitamine B12 et des folates à discuter.",
        "thrombopenia": "Thrombopénie contrôlée sur tube citraté (absence d'agrégats).",
        "infection": "Hyperleucocytose à polynucléaires neutrophiles.",
        "eosino": "Hyperéosinophilie modérée.",
    }
    return (red, diff, platelets), comments.get(scenario)


def _ckd_epi(creat_umol: float, age: int, sex: Sex) -> float:
    """CKD-EPI 2009 without ethnic factor, as French labs report it (mL/min/1,73 m²)."""
    scr = creat_umol / 88.4
    kappa, alpha = (0.7, -0.329) if sex == "F" else (0.9, -0.411)
    ratio = scr / kappa
    gfr = 141 * math.pow(min(ratio, 1), alpha) * math.pow(max(ratio, 1), -1.209) * 0.993**age
    return gfr * (1.018 if sex == "F" else 1.0)


def _biochemistry(rng: random.Random, s: Subject) -> tuple[tuple[LabSection, ...], str | None]:
    p = s.profile
    diabetic = p.has("diabete")
    glucose = rng.gauss(1.45, 0.3) if diabetic else _draw(rng, 0.72, 1.08, spread=6)
    if s.child:
        creat = rng.uniform(18, 25) + 2.2 * s.age
    elif p.has("irc"):
        creat = rng.uniform(120, 175)
    else:
        creat = rng.gauss(82 if s.sex == "M" else 66, 9)
    creat_range = (64, 104) if s.sex == "M" else (49, 90)
    chem: list[LabRow] = [
        LabRow("Glycémie à jeun", glucose, "g/L", 0.70, 1.10, 2),
        LabRow("Créatinine", creat, "µmol/L", *creat_range, 0),
    ]
    if not s.child:
        chem.append(
            LabRow(
                "DFG estimé (CKD-EPI)", _ckd_epi(creat, s.age, s.sex), "mL/min/1,73 m²", 60, None, 0
            )
        )
    sections = [LabSection("Biochimie sanguine", tuple(chem))]
    potassium = rng.gauss(4.7 if p.has("irc") else 4.2, 0.35)
    sections.append(
        LabSection(
            "Ionogramme sanguin",
            (
                LabRow("Sodium", rng.gauss(140, 1.8), "mmol/L", 136, 145, 0),
                LabRow("Potassium", potassium, "mmol/L", 3.5, 5.1, 1),
                LabRow("Chlore", rng.gauss(102, 2.2), "mmol/L", 98, 107, 0),
                LabRow("Bicarbonates", rng.gauss(25, 1.8), "mmol/L", 22, 29, 0),
            ),
        )
    )
    comment = None
    if rng.random() < 0.5:
        inflamed = rng.random() < 0.2
        crp = rng.uniform(35, 160) if inflamed else math.exp(rng.gauss(0.3, 0.8))
        sections.append(
            LabSection(
                "Inflammation", (LabRow("Protéine C réactive (CRP)", crp, "mg/L", None, 5, 1),)
            )
        )
        if inflamed:
            comment = "Syndrome inflammatoire biologique."
    if not s.child and (p.has("dyslipidemie") or p.has("coronaire") or rng.random() < 0.4):
        total_c = rng.gauss(2.35 if p.has("dyslipidemie") else 1.95, 0.3)
        hdl = rng.gauss(0.58 if s.sex == "F" else 0.48, 0.1)
        tg = max(0.4, rng.gauss(1.2 if not diabetic else 1.8, 0.4))
        ldl = total_c - hdl - tg / 5  # Friedewald, valid below 3.4 g/L of triglycerides
        sections.append(
            LabSection(
                "Bilan lipidique",
                (
                    LabRow("Cholestérol total", total_c, "g/L", None, 2.0, 2),
                    LabRow("Cholestérol HDL", hdl, "g/L", 0.40, None, 2),
                    LabRow("Triglycérides", tg, "g/L", None, 1.50, 2),
                    LabRow("Cholestérol LDL calculé", ldl, "g/L", None, 1.60, 2),
                ),
            )
        )
    if p.has("hypothyroidie") or rng.random() < 0.3:
        tsh = math.exp(rng.gauss(0.9 if p.has("hypothyroidie") else 0.5, 0.5))
        sections.append(
            LabSection("Hormonologie", (LabRow("TSH ultrasensible", tsh, "mUI/L", 0.27, 4.20, 2),))
        )
    if diabetic or (not s.child and rng.random() < 0.15):
        hba1c = rng.gauss(7.3, 0.8) if diabetic else rng.gauss(5.5, 0.3)
        sections.append(
            LabSection("Hémoglobine glyquée", (LabRow("HbA1c", hba1c, "%", 4.0, 6.0, 1),))
        )
        if diabetic and hba1c > 7:
            comment = "HbA1c au-dessus de l'objectif glycémique habituel (7 %)."
    return tuple(sections), comment


def make_lab_report(
    rng: random.Random,
    s: Subject,
    day: date,
    panel: Literal["cbc", "biochemistry"],
    prescriber: Practitioner,
) -> LabReport:
    sampled = datetime.combine(
        day, time(rng.randint(7, 11), rng.choice((0, 10, 15, 25, 30, 40, 45, 55)))
    )
    validated = sampled + timedelta(hours=rng.randint(3, 9), minutes=rng.randint(0, 59))
    if panel == "cbc":
        title = "Numération formule sanguine"
        sections, comment = _cbc(rng, s)
    else:
        title = "Bilan biochimique"
        sections, comment = _biochemistry(rng, s)
    return LabReport(
        title=title,
        request_number=f"{day:%y%m%d}-{rng.randint(1, 9999):04d}",
        prescriber=prescriber,
        biologist=rng.choice(BIOLOGISTS),
        sampled_at=sampled,
        validated_at=validated,
        sections=sections,
        comment=comment,
    )


# --- imaging ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Finding:
    normal: str
    # (what is seen, what the conclusion says); placeholders are filled from the exam's numbers.
    abnormal: tuple[tuple[str, str], ...] = ()
    chance: float = 0.0


@dataclass(frozen=True)
class _Exam:
    title: str
    modality: str
    indications: tuple[str, ...]
    techniques: tuple[str, ...]
    findings: tuple[_Finding, ...]
    min_age: int = 0  # no chest CT or thyroid nodule follow-up for young children


_EXAMS: tuple[_Exam, ...] = (
    _Exam(
        "Échographie abdominale",
        "Échographie",
        (
            "Douleurs de l'hypochondre droit.",
            "Perturbation du bilan hépatique.",
            "Bilan de douleurs abdominales diffuses.",
            "Contrôle d'une lithiase vésiculaire connue.",
        ),
        ("Examen réalisé par voie sous-costale et intercostale, patient à jeun, sonde convexe.",),
        (
            _Finding(
                "Foie de taille normale (flèche hépatique {liver} cm), de contours réguliers et d'échostructure homogène. Pas de lésion focale.",
                (
                    (
                        "Foie de taille normale, hyperéchogène de façon diffuse avec atténuation postérieure du faisceau.",
                        "Stéatose hépatique diffuse.",
                    ),
                ),
                0.25,
            ),
            _Finding(
                "Vésicule biliaire alithiasique, à paroi fine. Voie biliaire principale non dilatée ({bile} mm).",
                (
                    (
                        "Vésicule biliaire contenant plusieurs calculs mobiles de {stone} mm avec cône d'ombre postérieur, paroi fine. Voie biliaire principale non dilatée ({bile} mm).",
                        "Lithiase vésiculaire non compliquée.",
                    ),
                ),
                0.2,
            ),
            _Finding("Pancréas vu dans sa totalité, d'aspect normal."),
            _Finding("Rate homogène, de taille normale ({spleen} cm)."),
            _Finding(
                "Reins de taille normale, bien différenciés, sans dilatation des cavités pyélocalicielles ni lithiase.",
                (
                    (
                        "Kyste cortical simple du pôle supérieur du rein droit de {cyst} mm, anéchogène, à paroi fine. Pas de dilatation des cavités.",
                        "Kyste rénal droit simple (Bosniak I), sans conséquence.",
                    ),
                ),
                0.15,
            ),
            _Finding(
                "Aorte abdominale de calibre normal. Pas d'épanchement péritonéal.",
                (
                    (
                        "Ectasie de l'aorte abdominale sous-rénale mesurée à {aorta} mm. Pas d'épanchement péritonéal.",
                        "Ectasie aortique sous-rénale de {aorta} mm : contrôle échographique à distance.",
                    ),
                ),
                0.06,
            ),
        ),
    ),
    _Exam(
        "Échographie thyroïdienne",
        "Échographie",
        (
            "Bilan d'une TSH anormale.",
            "Nodule palpé à l'examen clinique.",
            "Surveillance d'un nodule thyroïdien connu.",
        ),
        (
            "Examen réalisé avec une sonde linéaire haute fréquence, complété par un doppler couleur.",
        ),
        (
            _Finding(
                "Thyroïde en place. Lobe droit : {lobe_r} x 16 x 14 mm. Lobe gauche : {lobe_l} x 15 x 13 mm. Isthme : {isthmus} mm.",
            ),
            _Finding(
                "Parenchyme homogène, normoéchogène, normovascularisé, sans nodule.",
                (
                    (
                        "Nodule du lobe droit de {nodule} mm, solide, isoéchogène, ovale, à contours réguliers, sans microcalcification.",
                        "Nodule thyroïdien droit de {nodule} mm classé EU-TIRADS 3 : surveillance échographique à un an.",
                    ),
                    (
                        "Parenchyme hétérogène et hypoéchogène de façon diffuse, hypervascularisé au doppler.",
                        "Aspect évocateur de thyroïdite, à confronter au dosage des anticorps anti-TPO.",
                    ),
                ),
                0.45,
            ),
            _Finding("Pas d'adénopathie cervicale suspecte."),
        ),
        min_age=15,
    ),
    _Exam(
        "Échographie rénale et vésicale",
        "Échographie",
        (
            "Infections urinaires à répétition.",
            "Bilan d'une insuffisance rénale.",
            "Colique néphrétique.",
        ),
        ("Examen réalisé vessie en réplétion, sonde convexe.",),
        (
            _Finding(
                "Rein droit de {kidney_r} mm, rein gauche de {kidney_l} mm, bien différenciés, sans dilatation des cavités pyélocalicielles.",
                (
                    (
                        "Reins de taille réduite (droit {kidney_small} mm), hyperéchogènes, mal différenciés. Pas de dilatation.",
                        "Reins de petite taille, d'aspect néphropathique.",
                    ),
                    (
                        "Calcul de {stone} mm du groupe caliciel inférieur gauche, non obstructif.",
                        "Lithiase rénale gauche non obstructive.",
                    ),
                ),
                0.3,
            ),
            _Finding(
                "Vessie à paroi fine, de contenu anéchogène. Résidu post-mictionnel non significatif."
            ),
        ),
    ),
    _Exam(
        "Scanner thoracique",
        "Scanner",
        (
            "Toux persistante chez un patient fumeur.",
            "Dyspnée d'effort inexpliquée.",
            "Contrôle d'un micronodule pulmonaire.",
            "Suspicion de pneumopathie.",
        ),
        (
            "Acquisition hélicoïdale thoracique sans injection de produit de contraste, reconstructions en fenêtres parenchymateuse et médiastinale. PDL : {dlp} mGy.cm.",
            "Acquisition hélicoïdale thoracique après injection intraveineuse de 70 mL de produit de contraste iodé, au temps artériel pulmonaire. PDL : {dlp} mGy.cm.",
        ),
        (
            _Finding(
                "Pas de nodule ni de masse pulmonaire. Pas de condensation parenchymateuse. Pas d'emphysème.",
                (
                    (
                        "Micronodule solide de {micronodule} mm du lobe supérieur droit, non calcifié, à contours nets.",
                        "Micronodule pulmonaire du lobe supérieur droit de {micronodule} mm : contrôle selon les recommandations de la Fleischner Society.",
                    ),
                    (
                        "Emphysème centrolobulaire prédominant aux apex. Épaississement des parois bronchiques.",
                        "Emphysème centrolobulaire apical.",
                    ),
                    (
                        "Condensation alvéolaire du lobe inférieur gauche avec bronchogramme aérique.",
                        "Pneumopathie lobaire inférieure gauche.",
                    ),
                ),
                0.45,
            ),
            _Finding(
                "Pas d'épanchement pleural ni péricardique.",
                (
                    (
                        "Épanchement pleural droit de faible abondance.",
                        "Épanchement pleural droit de faible abondance.",
                    ),
                ),
                0.1,
            ),
            _Finding("Pas d'adénopathie médiastinale ni hilaire. Coeur de taille normale."),
            _Finding("Pas de lésion osseuse suspecte."),
        ),
        min_age=18,
    ),
    _Exam(
        "TDM abdomino-pelvienne",
        "Scanner",
        (
            "Douleurs de la fosse iliaque gauche fébriles.",
            "Bilan d'une altération de l'état général.",
            "Douleurs abdominales aiguës.",
        ),
        (
            "Acquisition hélicoïdale abdomino-pelvienne au temps portal après injection intraveineuse de 100 mL de produit de contraste iodé. PDL : {dlp} mGy.cm.",
        ),
        (
            _Finding(
                "Foie de morphologie normale, sans lésion focale. Vésicule alithiasique. Voies biliaires non dilatées.",
                (("Foie stéatosique, sans lésion focale.", "Stéatose hépatique."),),
                0.2,
            ),
            _Finding("Pancréas, rate et surrénales sans anomalie."),
            _Finding(
                "Reins de taille normale, sans dilatation des cavités ni lithiase.",
                (
                    (
                        "Kyste rénal gauche simple de {cyst} mm.",
                        "Kyste rénal gauche simple (Bosniak I).",
                    ),
                ),
                0.15,
            ),
            _Finding(
                "Pas d'anomalie du cadre colique. Appendice fin.",
                (
                    (
                        "Diverticulose sigmoïdienne avec infiltration de la graisse péricolique, sans abcès ni pneumopéritoine.",
                        "Sigmoïdite diverticulaire non compliquée.",
                    ),
                    (
                        "Diverticulose sigmoïdienne non compliquée.",
                        "Diverticulose sigmoïdienne non compliquée.",
                    ),
                ),
                0.35,
            ),
            _Finding("Pas d'épanchement intrapéritonéal. Pas d'adénomégalie."),
        ),
        min_age=18,
    ),
)


def make_imaging_report(
    rng: random.Random,
    s: Subject,
    day: date,
    prescriber: Practitioner,
    radiologist: Practitioner,
) -> ImagingReport:
    exams = [e for e in _EXAMS if s.age >= e.min_age]
    exam = rng.choice(exams)
    numbers = {
        "liver": rng.randint(11, 15),
        "bile": rng.randint(3, 6),
        "stone": rng.randint(4, 12),
        "spleen": rng.randint(9, 12),
        "cyst": rng.randint(8, 35),
        "aorta": rng.randint(26, 29),
        "lobe_r": rng.randint(38, 50),
        "lobe_l": rng.randint(36, 48),
        "isthmus": rng.randint(2, 5),
        "nodule": rng.randint(6, 19),
        "kidney_r": rng.randint(100, 120),
        "kidney_l": rng.randint(100, 122),
        "kidney_small": rng.randint(82, 92),
        "micronodule": rng.randint(3, 6),
        "dlp": rng.randint(140, 520),
    }
    findings: list[str] = []
    conclusion: list[str] = []
    for finding in exam.findings:
        if finding.abnormal and rng.random() < finding.chance:
            seen, concluded = rng.choice(finding.abnormal)
            findings.append(seen.format(**numbers))
            conclusion.append(concluded.format(**numbers))
        else:
            findings.append(finding.normal.format(**numbers))
    if not conclusion:
        conclusion.append(
            rng.choice(("Examen sans particularité.", "Absence d'anomalie décelable."))
        )
    modality_code = "US" if exam.modality == "Échographie" else "CT"
    return ImagingReport(
        title=exam.title,
        modality=exam.modality,
        accession=f"{modality_code}{day:%y%m%d}{rng.randint(1, 999):03d}",
        prescriber=prescriber,
        radiologist=radiologist,
        sections=(
            Section("Indication", (rng.choice(exam.indications),)),
            Section("Technique", (rng.choice(exam.techniques).format(**numbers),)),
            Section("Résultats", tuple(findings)),
        ),
        conclusion=tuple(conclusion),
    )


# --- letters ----------------------------------------------------------------------------------


def _vitals(rng: random.Random, s: Subject) -> str:
    if s.child:
        return f"Poids {s.weight_kg} kg, taille {s.height_cm} cm. Température {fr_number(rng.uniform(36.6, 37.4), 1)} °C."
    bmi = s.weight_kg / (s.height_cm / 100) ** 2
    high = s.profile.has("hta")
    return (
        f"Poids {s.weight_kg} kg pour {fr_number(s.height_cm / 100, 2)} m "
        f"(IMC {fr_number(bmi, 1)} kg/m²). Pression artérielle {rng.randint(128, 158) if high else rng.randint(108, 134)}/"
        f"{rng.randint(78, 94) if high else rng.randint(62, 82)} mmHg, fréquence cardiaque {rng.randint(58, 88)}/min."
    )


def _background(s: Subject) -> tuple[Section, ...]:
    treatment = s.profile.treatment()
    return (
        Section(
            "Antécédents",
            (*s.profile.history(), f"Allergies : {s.profile.allergy_text}"),
            as_list=True,
        ),
        Section(
            "Traitement habituel",
            tuple(f"{m.drug} : {m.dosage}" for m in treatment)
            or ("Aucun traitement au long cours",),
            as_list=True,
        ),
    )


def _cardiology(rng: random.Random, s: Subject) -> tuple[str, tuple[Section, ...]]:
    p = s.profile
    options: list[str] = ["palpitations", "dyspnee", "douleur"]
    options += [c for c in ("hta", "fa", "ic", "coronaire") if p.has(c)] * 3
    reason = rng.choice(options)
    fevg = rng.randint(30, 40) if p.has("ic") else rng.randint(55, 68)
    fc = rng.randint(56, 84)
    ecg = (
        f"fibrillation atriale à {rng.randint(72, 96)}/min, QRS fins."
        if reason == "fa" and rng.random() < 0.4
        else f"rythme sinusal à {fc}/min, PR {rng.randint(140, 200)} ms, QRS fins, pas de trouble de la repolarisation."
    )
    motive, story, plan = {
        "palpitations": (
            "des palpitations",
            f"{s.pronoun.capitalize()} décrit depuis quelques semaines des épisodes de palpitations rapides et régulières, de début et de fin brusques, durant quelques minutes, sans malaise ni douleur thoracique.",
            f"Je vous propose un enregistrement Holter ECG de 24 heures, un bilan thyroïdien et une kaliémie. Je reverrai {s.patient_word} avec les résultats.",
        ),
        "dyspnee": (
            "une dyspnée d'effort",
            f"{s.pronoun.capitalize()} signale un essoufflement à la montée de deux étages, d'installation progressive depuis six mois, sans orthopnée ni oedème des membres inférieurs.",
            "Une épreuve d'effort est programmée afin d'éliminer une cause ischémique ; un dosage du NT-proBNP a été prescrit.",
        ),
        "douleur": (
            "une douleur thoracique atypique",
            f"{s.pronoun.capitalize()} rapporte des douleurs latérothoraciques gauches brèves, survenant au repos, reproduites à la palpation, sans lien avec l'effort.",
            "Le tableau est peu évocateur d'une origine coronarienne. Compte tenu des facteurs de risque, un coroscanner est demandé pour conclure.",
        ),
        "hta": (
            "le suivi de son hypertension artérielle",
            "Les automesures tensionnelles rapportées montrent une moyenne de 138/86 mmHg. Pas de céphalée ni de trouble visuel.",
            "La pression artérielle reste un peu au-dessus de l'objectif ; je vous propose de majorer l'amlodipine à 10 mg et de revoir les automesures dans un mois.",
        ),
        "fa": (
            "le suivi de sa fibrillation atriale paroxystique",
            "Quelques accès de palpitations brefs depuis la dernière consultation, sans malaise ni signe d'accident ischémique transitoire. Bonne observance de l'anticoagulation.",
            f"Score CHA2DS2-VASc à {rng.randint(2, 4)} : l'anticoagulation par apixaban est poursuivie. Contrôle de la fonction rénale tous les six mois.",
        ),
        "ic": (
            "le suivi de son insuffisance cardiaque",
            "Dyspnée stade II de la NYHA, stable. Pas de prise de poids récente. Pas d'hospitalisation depuis la dernière consultation.",
            "Traitement inchangé. Surveillance du poids et de la kaliémie. Réadaptation cardiaque proposée.",
        ),
        "coronaire": (
            "le suivi de sa cardiopathie ischémique",
            "Aucune récidive angineuse. Activité physique régulière (marche 30 minutes par jour).",
            "Poursuite du traitement. Objectif de LDL-cholestérol inférieur à 0,55 g/L : à contrôler dans trois mois. Épreuve d'effort de contrôle dans un an.",
        ),
    }[reason]
    if reason == "fa" and ecg.startswith("fibrillation"):
        plan = "Fibrillation atriale présente ce jour, bien tolérée. " + plan
    sections = (
        *_background(s),
        Section("Histoire de la maladie", (story,)),
        Section(
            "Examen clinique",
            (
                _vitals(rng, s),
                "Bruits du coeur réguliers, sans souffle. Pas de signe d'insuffisance cardiaque. Pouls périphériques perçus."
                if not p.has("ic")
                else "Bruits du coeur réguliers, sans souffle. Discrets oedèmes des chevilles. Pas de crépitant pulmonaire.",
            ),
        ),
        Section(
            "Examens complémentaires",
            (
                f"ECG : {ecg}",
                f"Échocardiographie transthoracique : FEVG estimée à {fevg} % (Simpson biplan), pas de valvulopathie significative, pressions de remplissage non élevées.",
            ),
        ),
        Section("Conclusion", (plan,)),
    )
    return motive, sections


def _generic_specialty(
    rng: random.Random, s: Subject, specialty: str
) -> tuple[str, tuple[Section, ...]]:
    p = s.profile
    cases: dict[str, list[tuple[str, str, str, str]]] = {
        # (motive, story, exam, conclusion)
        "Endocrinologie": [
            (
                "le suivi de son diabète de type 2",
                "Pas d'hypoglycémie. Régime suivi de façon inégale. Dernière HbA1c à 7,4 %.",
                "Pieds : sensibilité au monofilament conservée, pas de plaie. Pouls pédieux perçus.",
                "Équilibre glycémique insuffisant. Introduction d'un analogue du GLP-1 à discuter lors de la prochaine consultation ; fond d'oeil et microalbuminurie à programmer.",
            ),
            (
                "l'exploration d'un nodule thyroïdien",
                "Nodule découvert fortuitement lors d'un écho-doppler des vaisseaux du cou. Pas de dysphagie ni de dysphonie.",
                "Thyroïde souple, nodule droit palpable, mobile, indolore. Pas d'adénopathie cervicale.",
                "TSH normale. Nodule classé EU-TIRADS 3 : surveillance échographique dans un an.",
            ),
        ],
        "Pneumologie": [
            (
                "une toux chronique",
                "Toux sèche évoluant depuis plus de huit semaines, sans hémoptysie ni amaigrissement.",
                "Auscultation pulmonaire : murmure vésiculaire symétrique, quelques sibilants expiratoires. SpO2 97 % en air ambiant.",
                "Les explorations fonctionnelles respiratoires montrent un trouble ventilatoire obstructif réversible : asthme probable. Traitement inhalé introduit, réévaluation dans trois mois.",
            ),
            (
                "le suivi de sa BPCO"
                if p.has("bpco")
                else "un essoufflement d'effort chez un fumeur",
                "Dyspnée stade 2 de l'échelle mMRC. Une exacerbation l'hiver dernier, traitée en ville.",
                "Auscultation : diminution diffuse du murmure vésiculaire. SpO2 95 % en air ambiant.",
                f"VEMS à 62 % de la théorique. {'Sevrage tabagique fortement encouragé' if p.smoker else 'Sevrage tabagique maintenu'} ; réhabilitation respiratoire proposée ; vaccinations antigrippale et antipneumococcique à jour.",
            ),
        ],
        "Rhumatologie": [
            (
                "des gonalgies mécaniques",
                "Douleurs des deux genoux à la marche prolongée et dans les escaliers, dérouillage matinal inférieur à 15 minutes.",
                "Genoux secs, flexion limitée à 120°, craquements rotuliens. Pas de déformation axiale majeure.",
                "Tableau de gonarthrose bilatérale. Poursuite du paracétamol à la demande, kinésithérapie de renforcement du quadriceps, perte de poids encouragée.",
            ),
            (
                "une lombalgie chronique",
                "Lombalgie évoluant depuis plus de trois mois, sans radiculalgie ni signe neurologique.",
                "Raideur lombaire, indice de Schober 14/10. Pas de déficit sensitivomoteur. Réflexes présents et symétriques.",
                "Lombalgie commune chronique. Pas d'indication à une imagerie complémentaire. Programme de rééducation active et reprise progressive de l'activité physique.",
            ),
        ],
        "Pédiatrie": [
            (
                "une toux nocturne récidivante",
                "Toux sèche nocturne depuis plusieurs semaines, sifflements lors des épisodes viraux. Pas de fièvre. Scolarité normale.",
                "Bon état général. Auscultation pulmonaire normale ce jour. Courbes de croissance régulières.",
                "Tableau évocateur d'un asthme de l'enfant. Traitement de fond par corticoïde inhalé avec chambre d'inhalation, plan d'action remis aux parents.",
            ),
            (
                "un suivi de croissance",
                "Inquiétude des parents sur la taille. Alimentation diversifiée, bon appétit, développement psychomoteur normal.",
                "Croissance régulière dans le couloir de la moyenne. Examen clinique normal.",
                "Croissance staturo-pondérale normale. Pas d'exploration complémentaire nécessaire. Suivi habituel.",
            ),
        ],
    }
    # The first case of each specialty only fits some patients; the second fits anyone.
    fits_first = {
        "Endocrinologie": p.has("diabete"),
        "Pneumologie": True,
        "Rhumatologie": s.age >= 50,
        "Pédiatrie": True,
    }[specialty]
    fits_second = specialty != "Pneumologie" or p.has("bpco") or p.smoker
    options = [
        c for c, fits in zip(cases[specialty], (fits_first, fits_second), strict=True) if fits
    ]
    motive, story, exam, conclusion = rng.choice(options)
    sections = (
        *_background(s),
        Section("Histoire de la maladie", (story,)),
        Section("Examen clinique", (_vitals(rng, s), exam)),
        Section("Conclusion", (conclusion,)),
    )
    return motive, sections


def _of(word: str) -> str:
    """French elision: "de cardiologie" but "d'endocrinologie"."""
    return f"d'{word}" if word[:1] in "aeéèiouyh" else f"de {word}"


def make_consultation_letter(
    rng: random.Random,
    s: Subject,
    day: date,
    author: Practitioner,
    recipient: Practitioner,
) -> Letter:
    """A specialist's letter to the patient's doctor, or a GP's referral to a specialist."""
    if author.specialty == "Médecine générale":
        # Our GP's referrals all go to a cardiologist (ours, or the clinic's other one).
        reasons = [
            "des palpitations récentes, sans malaise",
            "un souffle systolique découvert à l'auscultation",
        ]
        if not s.child:
            reasons += [
                "une dyspnée d'effort d'aggravation progressive",
                "un bilan cardiologique avant la reprise d'une activité sportive",
            ]
            if s.profile.has("hta"):
                reasons.append("une hypertension artérielle mal contrôlée malgré le traitement")
        reason = rng.choice(reasons)
        opening = (
            f"Cher confrère,\n\nJe vous adresse {s.designation}, {s.age_text}, pour un avis "
            f"cardiologique concernant {reason}."
        )
        sections = (
            *_background(s),
            Section(
                "Examen clinique", (_vitals(rng, s), "Examen cardiopulmonaire sans particularité.")
            ),
        )
        closing = (
            f"Je vous remercie de bien vouloir {'la' if s.sex == 'F' else 'le'} recevoir et de me "
            f"tenir informé{'e' if author.feminine else ''} de votre avis.\n\n"
            "Bien confraternellement."
        )
        return Letter(
            title="Lettre d'adressage",
            author=author,
            recipient=recipient,
            subject_line=s.subject_line,
            opening=opening,
            sections=sections,
            closing=closing,
        )
    if author.specialty == "Cardiologie":
        motive, sections = _cardiology(rng, s)
    else:
        motive, sections = _generic_specialty(rng, s, author.specialty.split("-")[0])
    accompanied = f", accompagné{s.e} de sa mère" if s.child else ""
    opening = (
        f"Cher confrère,\n\nJ'ai vu en consultation le {fr_long_date(day)} {s.designation}, "
        f"âgé{s.e} de {s.age_text}{accompanied}, que vous m'avez adressé{s.e} pour {motive}."
    )
    closing = "Je reste à votre disposition pour tout renseignement complémentaire.\n\nBien confraternellement."
    return Letter(
        title=f"Consultation {_of(author.specialty.split('-')[0].lower())}",
        author=author,
        recipient=recipient,
        subject_line=s.subject_line,
        opening=opening,
        sections=sections,
        closing=closing,
    )


# --- discharge summaries ---------------------------------------------------------------------


@dataclass(frozen=True)
class _Stay:
    service: str
    motive: str
    story: str
    exam: str
    tests: str
    course: str
    discharge: tuple[Medication, ...]
    follow_up: str


def _stays(rng: random.Random, s: Subject) -> list[_Stay]:
    e = s.e
    temp = fr_number(rng.uniform(38.4, 39.6), 1)
    crp = rng.randint(60, 240)
    # A penicillin allergy in the history must not meet amoxicillin on the way out.
    if (s.profile.allergy or "").startswith("Pénicillines"):
        antibiotic = "lévofloxacine"
        pneumonia_drug = Medication(
            "Lévofloxacine 500 mg, comprimé", "1 comprimé par jour", "4 jours"
        )
    else:
        antibiotic = "amoxicilline-acide clavulanique"
        pneumonia_drug = Medication(
            "Amoxicilline/acide clavulanique 1 g/125 mg, comprimé",
            "1 comprimé 3 fois par jour",
            "4 jours",
        )
    return [
        _Stay(
            "Médecine interne",
            "Pneumopathie aiguë communautaire",
            f"Patient{e} admis{e} pour une fièvre à {temp} °C associée à une toux productive et une douleur basithoracique droite depuis trois jours.",
            f"Température {temp} °C, fréquence respiratoire 24/min, SpO2 93 % en air ambiant. Crépitants en base droite.",
            f"CRP {crp} mg/L, leucocytes 14,2 G/L. Radiographie thoracique : opacité alvéolaire du lobe inférieur droit. Antigénuries négatives.",
            f"Apyrexie obtenue en 48 heures sous {antibiotic}. Sevrage de l'oxygène au troisième jour. Relais per os bien toléré.",
            (
                pneumonia_drug,
                Medication(
                    "Paracétamol 1 g, comprimé",
                    "1 comprimé toutes les 6 heures si fièvre",
                    "5 jours",
                ),
            ),
            "Consultation chez le médecin traitant à une semaine. Radiographie thoracique de contrôle à six semaines.",
        ),
        _Stay(
            "Cardiologie",
            "Décompensation cardiaque globale",
            f"Patient{e} admis{e} pour une dyspnée de repos d'aggravation progressive sur une semaine, avec prise de poids de 4 kg et oedèmes des membres inférieurs.",
            "Orthopnée, crépitants bilatéraux aux deux tiers des champs pulmonaires, oedèmes bilatéraux prenant le godet, turgescence jugulaire.",
            f"NT-proBNP {rng.randint(2800, 9800)} pg/mL, troponine stable. ETT : FEVG {rng.randint(28, 40)} %, insuffisance mitrale fonctionnelle modérée.",
            f"Amélioration sous furosémide intraveineux avec une perte de {rng.randint(3, 6)} kg. Optimisation du traitement de l'insuffisance cardiaque.",
            (
                Medication("Furosémide 40 mg, comprimé", "1 comprimé le matin"),
                Medication("Bisoprolol 2,5 mg, comprimé", "1 comprimé le matin"),
                Medication("Dapagliflozine 10 mg, comprimé", "1 comprimé le matin"),
            ),
            "Ionogramme et créatininémie à J7. Consultation de cardiologie à un mois. Pesée quotidienne.",
        ),
        _Stay(
            "Cardiologie",
            "Fibrillation atriale rapide",
            f"Patient{e} admis{e} pour des palpitations mal tolérées évoluant depuis la veille.",
            f"Fréquence cardiaque {rng.randint(130, 160)}/min irrégulière, pression artérielle 126/78 mmHg. Pas de signe d'insuffisance cardiaque.",
            "ECG : fibrillation atriale rapide sans trouble de la repolarisation. TSH normale. ETT : oreillette gauche modérément dilatée, FEVG conservée.",
            "Ralentissement par bêtabloquant puis retour spontané en rythme sinusal à 36 heures. Anticoagulation introduite (score CHA2DS2-VASc à 2).",
            (
                Medication("Apixaban 5 mg, comprimé", "1 comprimé matin et soir"),
                Medication("Bisoprolol 2,5 mg, comprimé", "1 comprimé le matin"),
            ),
            "Consultation de cardiologie à trois mois avec Holter ECG.",
        ),
        _Stay(
            "Chirurgie viscérale",
            "Cholécystite aiguë lithiasique",
            f"Patient{e} admis{e} pour une douleur de l'hypochondre droit fébrile évoluant depuis 24 heures.",
            f"Température {temp} °C, signe de Murphy positif. Abdomen souple par ailleurs.",
            f"CRP {crp} mg/L, bilan hépatique normal. Échographie : vésicule lithiasique à paroi épaissie à 6 mm, voie biliaire principale fine.",
            "Cholécystectomie par coelioscopie à J1, suites opératoires simples. Reprise de l'alimentation à J2.",
            (
                Medication(
                    "Paracétamol 1 g, comprimé",
                    "1 comprimé toutes les 6 heures si douleur",
                    "7 jours",
                ),
                Medication(
                    "Énoxaparine 4000 UI/0,4 mL, solution injectable",
                    "1 injection sous-cutanée le soir",
                    "10 jours",
                ),
            ),
            "Consultation chirurgicale à un mois. Ablation des fils non nécessaire (surjet résorbable).",
        ),
        _Stay(
            "Médecine interne",
            "Pyélonéphrite aiguë",
            f"Patient{e} admis{e} pour une fièvre à {temp} °C avec brûlures mictionnelles et douleur lombaire droite.",
            f"Température {temp} °C, fosse lombaire droite sensible, pression artérielle 118/70 mmHg.",
            f"CRP {crp} mg/L. ECBU : Escherichia coli sensible aux céphalosporines de 3e génération et aux fluoroquinolones. Échographie rénale sans dilatation.",
            "Apyrexie en 48 heures sous ceftriaxone, relais per os selon l'antibiogramme.",
            (Medication("Ofloxacine 200 mg, comprimé", "1 comprimé matin et soir", "7 jours"),),
            "ECBU de contrôle non systématique. Consultation chez le médecin traitant en cas de récidive fébrile.",
        ),
    ]


def make_discharge_summary(
    rng: random.Random,
    s: Subject,
    day: date,
    author: Practitioner | None,
    recipient: Practitioner,
) -> Letter:
    """A hospital stay ending on `day`; `author` None means the service's own physician."""
    # Heart failure is for the old or the known; atrial fibrillation for the over-forties.
    stays = [
        st
        for st in _stays(rng, s)
        if not (st.motive.startswith("Décompensation") and s.age < 65 and not s.profile.has("ic"))
        and not (st.motive.startswith("Fibrillation") and s.age < 40)
    ]
    if author is not None:
        stays = [st for st in stays if st.service == author.specialty] or stays
    stay = rng.choice(stays)
    writer = author if author is not None and author.specialty == stay.service else None
    writer = writer or SPECIALISTS[stay.service]
    admitted = day - timedelta(days=rng.randint(2, 9))
    # Chronic medication continues after the stay unless the stay's own list replaces it.
    new_drugs = {m.molecule for m in stay.discharge}
    kept = tuple(m for m in s.profile.treatment() if m.molecule not in new_drugs)
    exit_treatment = tuple(
        f"{m.drug} : {m.dosage}" + (f", pendant {m.duration}" if m.duration else "")
        for m in (*stay.discharge, *kept)
    )
    sections = (
        Section("Motif d'hospitalisation", (stay.motive,)),
        *_background(s),
        Section("Histoire de la maladie", (stay.story,)),
        Section("Examen clinique à l'entrée", (stay.exam,)),
        Section("Examens complémentaires", (stay.tests,)),
        Section("Évolution dans le service", (stay.course,)),
        Section("Traitement de sortie", exit_treatment, as_list=True),
        Section("Suivi", (stay.follow_up,)),
    )
    opening = (
        f"Cher confrère,\n\nVotre patient{s.e} {s.designation}, {s.age_text}, a été "
        f"hospitalisé{s.e} dans le service de {stay.service.lower()} du {fr_date(admitted)} "
        f"au {fr_date(day)}."
    )
    return Letter(
        title=f"Compte rendu d'hospitalisation – {stay.service}",
        author=writer,
        recipient=recipient,
        subject_line=s.subject_line,
        opening=opening,
        sections=sections,
        closing="Bien confraternellement.",
        service=stay.service,
        admitted=admitted,
    )


# --- prescriptions and certificates ----------------------------------------------------------


def _acute(rng: random.Random, s: Subject) -> tuple[Medication, ...]:
    if s.child:
        weight = s.weight_kg
        # 50 mg/kg/day in two doses, rounded to the 250 mg of a measuring spoon, at most 1 g.
        amox = min(1000, max(250, round(weight * 50 / 2 / 250) * 250))
        return rng.choice(
            (
                (
                    Medication(
                        "Amoxicilline 250 mg/5 mL, poudre pour suspension buvable",
                        f"{amox} mg matin et soir",
                        "6 jours",
                    ),
                    Medication(
                        "Paracétamol 2,4 %, suspension buvable",
                        f"1 dose-poids ({weight} kg) toutes les 6 heures si fièvre",
                        "5 jours",
                    ),
                ),
                (
                    Medication(
                        "Paracétamol 2,4 %, suspension buvable",
                        f"1 dose-poids ({weight} kg) toutes les 6 heures si fièvre",
                        "3 jours",
                    ),
                    Medication(
                        "Chlorure de sodium 0,9 %, unidoses",
                        "Lavage de nez 4 fois par jour",
                        "8 jours",
                    ),
                ),
                (
                    Medication(
                        "Soluté de réhydratation orale, sachet",
                        "1 sachet dans 200 mL d'eau, à volonté",
                        "3 jours",
                    ),
                    Medication(
                        "Racécadotril 30 mg, granulés", "1 sachet 3 fois par jour", "3 jours"
                    ),
                ),
            )
        )
    no_penicillin = (s.profile.allergy or "").startswith("Pénicillines")
    options: list[tuple[Medication, ...]] = [
        (
            Medication(
                "Paracétamol 1 g, comprimé",
                "1 comprimé jusqu'à 3 fois par jour si douleur, en espaçant de 6 heures",
                "5 jours",
            ),
            Medication(
                "Ibuprofène 400 mg, comprimé",
                "1 comprimé matin et soir au cours des repas",
                "5 jours",
            ),
        ),
        (
            Medication(
                "Fosfomycine trométamol 3 g, granulés",
                "1 sachet en prise unique, à distance des repas",
            ),
        ),
        (
            Medication(
                "Paracétamol 1 g, comprimé",
                "1 comprimé jusqu'à 3 fois par jour si fièvre",
                "5 jours",
            ),
            Medication(
                "Chlorure de sodium 0,9 %, unidoses", "Lavage de nez 3 fois par jour", "7 jours"
            ),
        ),
    ]
    if not no_penicillin:
        options.append(
            (
                Medication("Amoxicilline 1 g, comprimé", "1 comprimé matin et soir", "6 jours"),
                Medication(
                    "Paracétamol 1 g, comprimé",
                    "1 comprimé jusqu'à 3 fois par jour si douleur",
                    "5 jours",
                ),
            )
        )
    return rng.choice(options)


def make_prescription(rng: random.Random, s: Subject, prescriber: Practitioner) -> Prescription:
    chronic = s.profile.treatment()
    if chronic and rng.random() < 0.65:
        # A renewal of the background treatment, split as a bizone form when an ALD applies.
        ald_drugs = {
            m for c in s.profile.conditions if _CONDITIONS[c].ald for m in _CONDITIONS[c].treatment
        }
        ald_items = tuple(Medication(m.drug, m.dosage, "3 mois") for m in chronic if m in ald_drugs)
        items = tuple(Medication(m.drug, m.dosage, "3 mois") for m in chronic if m not in ald_drugs)
        renewals = rng.choice((0, 1, 3))
        return Prescription(
            "Ordonnance de renouvellement", prescriber, ald_items, items, renewals, None
        )
    return Prescription(
        "Ordonnance",
        prescriber,
        (),
        _acute(rng, s),
        0,
        s.weight_kg if s.child else None,
    )


def make_certificate(
    rng: random.Random, s: Subject, author: Practitioner, birth: date
) -> Certificate:
    born = f"né{s.e} le {fr_date(birth)}"
    signer = (
        f"Je soussigné{'e' if author.feminine else ''}, {author.formal_name}, "
        "certifie avoir examiné ce jour"
    )
    # The formula French certificates end with: handed to the patient, for whatever use.
    asked_by = "des parents" if s.child else f"de l'intéressé{s.e}"
    handed = (
        f"Certificat établi à la demande {asked_by} et remis en main propre pour faire valoir "
        "ce que de droit."
    )
    if s.child and s.age < 6:
        title = "Certificat médical"
        body = (
            f"{signer} l'enfant {s.given_name} {s.family_name.upper()}, {born}.",
            "Son état de santé et ses vaccinations, à jour selon le calendrier vaccinal en "
            "vigueur, lui permettent de fréquenter une collectivité d'enfants.",
        )
    elif s.age <= 70 and rng.random() < 0.6:
        sport = rng.choice(
            ("de la course à pied", "de la natation", "du football", "du tennis", "du cyclisme")
        )
        competition = ", y compris en compétition" if rng.random() < 0.5 else ""
        title = "Certificat de non contre-indication au sport"
        body = (
            f"{signer} {s.designation}, {born}.",
            "Je n'ai pas constaté, à la date de ce jour, de signe clinique apparent "
            f"contre-indiquant la pratique {sport}{competition}.",
        )
    else:
        title = "Attestation de suivi médical"
        body = (
            f"{signer} {s.designation}, {born}.",
            f"{s.pronoun.capitalize()} bénéficie d'un suivi médical régulier au sein de notre "
            "établissement, qui nécessite des consultations périodiques.",
        )
    return Certificate(title, author, (*body, handed))
