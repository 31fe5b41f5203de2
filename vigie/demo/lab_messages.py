"""The demo's lab reports as a laboratory sends them: an HL7 v2 ORU^R01 with every value in an
OBX, and the lab's own PDF embedded (OBX type ED), so a physician in the demo reads lab
results as data (table, history, charts) beside the report the lab laid out.

The message and the result set are written from the same synthetic `LabReport`, so what the
demo shows is what its "lab" sent. (The demo cannot go through the HL7 handler itself:
`demo` and `intake` are apps of one layer and stay apart; intake's own tests prove that the
handler turns a message into the same data.)
"""

from __future__ import annotations

import base64
from datetime import datetime

from vigie.records.results import Attachment, Observation, ResultGroup, ResultSet
from vigie.synthetic.clinic import DocumentSpec, PatientSpec
from vigie.synthetic.payloads import LabReport, LabRow

# LOINC codes of the analytes the synthetic lab measures most; the rest keep the lab's code.
LOINC = {
    "Hémoglobine": "718-7",
    "Leucocytes": "6690-2",
    "Plaquettes": "777-3",
    "Hématies": "789-8",
    "Hématocrite": "4544-3",
    "Sodium": "2951-2",
    "Potassium": "2823-3",
    "Chlore": "2075-0",
    "Créatinine": "14682-9",
    "Glycémie à jeun": "14749-6",
}


def _esc(text: str) -> str:
    """HL7 v2 escaping of the default separators (|^~\\&)."""
    out = text.replace("\\", "\\E\\")
    for char, code in (("|", "\\F\\"), ("^", "\\S\\"), ("~", "\\R\\"), ("&", "\\T\\")):
        out = out.replace(char, code)
    return out.replace("\r", " ").replace("\n", "\\.br\\")


def _number(value: float, decimals: int) -> str:
    return f"{round(value, decimals):.{decimals}f}"


def _range(row: LabRow) -> str:
    if row.low is not None and row.high is not None:
        return f"{_number(row.low, row.decimals)}-{_number(row.high, row.decimals)}"
    if row.high is not None:
        return f"<{_number(row.high, row.decimals)}"
    if row.low is not None:
        return f">{_number(row.low, row.decimals)}"
    return ""


def _code(row: LabRow) -> tuple[str, str]:
    loinc = LOINC.get(row.label)
    if loinc:
        return loinc, "LN"
    # The whole label: "Polynucléaires neutrophiles" and "… éosinophiles" must not collide.
    local = "".join(c for c in row.label.upper() if c.isalnum())[:40] or "X"
    return local, "L"


def _ts(moment: datetime) -> str:
    return moment.strftime("%Y%m%d%H%M")


def lab_message(
    doc: DocumentSpec, patient: PatientSpec, pdf: bytes, control_id: str
) -> tuple[bytes, ResultSet]:
    """The ORU^R01 for `doc` (a lab report) and the result set it carries."""
    report = doc.payload
    if not isinstance(report, LabReport):
        raise TypeError(f"{doc.title}: not a lab report")
    sampled = report.sampled_at
    ins = f"~{patient.ins}^^^ASIP-SANTE-INS-NIR&1.2.250.1.213.1.4.8&ISO^INS" if patient.ins else ""
    segments = [
        f"MSH|^~\\&|SIL|{_esc(doc.source_system)}|VIGIE|CLINIQUE|{_ts(report.validated_at)}||"
        f"ORU^R01^ORU_R01|{_esc(control_id)}|P|2.5.1||||||UNICODE UTF-8",
        f"PID|1||{_esc(patient.ipp)}^^^^PI{ins}||{_esc(patient.family_name)}^"
        f"{_esc(patient.given_names)}||{patient.birth_date:%Y%m%d}|{patient.sex}",
    ]
    comments: tuple[str, ...] = ()
    if report.comment:
        # Before the first OBR: a note on the whole report.
        segments.append(f"NTE|1||{_esc(report.comment)}")
        comments = (report.comment,)
    groups = []
    for number, section in enumerate(report.sections, start=1):
        obr = ["OBR", str(number), "", _esc(report.request_number), *[""] * 29]
        obr[4] = f"{number}^{_esc(section.title)}^L"
        obr[7] = _ts(sampled)
        # OBR-32, the principal result interpreter (an NDL: its CNN in subcomponents).
        obr[32] = f"&{_esc(report.biologist.family_name)}&{_esc(report.biologist.given_name)}&&&Dr"
        segments.append("|".join(obr))
        observations = []
        for index, row in enumerate(section.rows, start=1):
            code, system = _code(row)
            value = _number(row.value, row.decimals)
            reference = _range(row)
            flag = row.flag or "N"
            segments.append(
                f"OBX|{index}|NM|{code}^{_esc(row.label)}^{system}||{value}|{_esc(row.unit)}"
                f"|{_esc(reference)}|{flag}|||F"
            )
            observations.append(
                Observation.from_text(
                    code=code,
                    code_system=system,
                    label=row.label,
                    value=value,
                    unit=row.unit,
                    reference_range=reference,
                    flag=flag,
                    status="F",
                    observed_at=sampled,
                    value_type="NM",
                )
            )
        groups.append(
            ResultGroup(
                code=str(number),
                label=section.title,
                observed_at=sampled,
                author=f"Dr {report.biologist.given_name} {report.biologist.family_name.upper()}",
                comments=(),
                observations=tuple(observations),
            )
        )
    encoded = base64.b64encode(pdf).decode("ascii")
    segments.append(f"OBX|1|ED|PDF^Compte rendu^L||SIL^AP^PDF^Base64^{encoded}||||||F")
    results = ResultSet(
        source=doc.source_system,
        groups=tuple(groups),
        reference=report.request_number,
        comments=comments,
        attachment=Attachment.of("application/pdf", pdf),
    )
    return ("\r".join(segments) + "\r").encode("utf-8"), results
