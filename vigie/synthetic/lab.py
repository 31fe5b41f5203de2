"""Synthetic laboratory reports (blood count, biochemistry): values and French text from the
caller's seeded `random.Random` (see `people.py`).
"""

from __future__ import annotations

import math
import random
from datetime import date, datetime, time, timedelta
from typing import Literal

from vigie.synthetic.payloads import LabReport, LabRow, LabSection
from vigie.synthetic.people import BIOLOGISTS, Practitioner, Sex, Subject


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
