"""Synthetic imaging reports (ultrasound, X-ray, CT): findings and French text from the
caller's seeded `random.Random` (see `people.py`).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import date

from vigie.synthetic.payloads import ImagingReport, Section
from vigie.synthetic.people import Practitioner, Subject


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
