"""Synthetic letters and discharge summaries: French text
from the caller's seeded `random.Random` (see `people.py`).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import date, timedelta

from vigie.synthetic.payloads import Letter, Section
from vigie.synthetic.people import (
    SPECIALISTS,
    Medication,
    Practitioner,
    Subject,
    fr_date,
    fr_long_date,
    fr_number,
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
