"""Who appears in the synthetic documents: the practitioners who sign them, and each patient's
medical background (`ClinicalProfile`) and identity as the documents show it (`Subject`).

Everything here is decided when the clinic is built, not when a PDF is drawn, so a
`DocumentSpec` fully describes its document and `pdf/` is pure layout. Every function takes
the caller's `random.Random`: the same seed gives the same values, sentence by sentence.

The text only has to be plausible to a French physician skimming a demo, not clinically
exhaustive; it is still kept coherent (a diabetic patient's HbA1c is high, a patient with a
cardiac history gets cardiology letters, haematology indices are computed from one another).
Strings avoid characters outside Windows-1252, the encoding of reportlab's built-in Helvetica.

The documents themselves are made one module per kind: `lab.py`, `imaging.py`, `letters.py`
(letters, discharge summaries), `prescriptions.py` and `certificates.py`; their payloads are in
`payloads.py`.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import date
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


CONDITIONS: dict[str, _Condition] = {
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
        lines = [CONDITIONS[c].label for c in self.conditions]
        if self.smoker:
            lines.append("Tabagisme actif")
        return tuple(lines) or ("Pas d'antécédent médical notable",)

    def treatment(self) -> tuple[Medication, ...]:
        # One line per molecule: when two conditions call for the same drug (a statin for
        # dyslipidaemia and for coronary disease), the later, stronger dose wins.
        by_molecule: dict[str, Medication] = {}
        for condition in self.conditions:
            for medication in CONDITIONS[condition].treatment:
                by_molecule.pop(medication.molecule, None)
                by_molecule[medication.molecule] = medication
        return tuple(by_molecule.values())

    def has(self, condition: str) -> bool:
        return condition in self.conditions

    @property
    def ald(self) -> bool:
        return any(CONDITIONS[c].ald for c in self.conditions)

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
