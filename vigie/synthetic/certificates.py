"""Synthetic medical certificates (daycare, sport, follow-up): French text from the caller's
seeded `random.Random` (see `people.py`).
"""

from __future__ import annotations

import random
from datetime import date

from vigie.synthetic.payloads import Certificate
from vigie.synthetic.people import Practitioner, Subject, fr_date


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
