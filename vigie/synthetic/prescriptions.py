"""Synthetic prescriptions (renewals, bizone forms, acute treatments): French text from the
caller's seeded `random.Random` (see `people.py`).
"""

from __future__ import annotations

import random

from vigie.synthetic.payloads import Prescription
from vigie.synthetic.people import (
    CONDITIONS,
    Medication,
    Practitioner,
    Subject,
)


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
