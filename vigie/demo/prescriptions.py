"""The demo's prescriptions and certificates: French text from the caller's seeded
`random.Random` (see `people.py`).
"""

from __future__ import annotations

import random
from datetime import date

from vigie.demo.payloads import Certificate, Prescription
from vigie.demo.people import (
    CONDITIONS,
    Medication,
    Practitioner,
    Subject,
    fr_date,
)

# --- letters ----------------------------------------------------------------------------------


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
            m for c in s.profile.conditions if CONDITIONS[c].ald for m in CONDITIONS[c].treatment
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
