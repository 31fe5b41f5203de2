"""A synthetic medical certificate: the practitioner's letterhead, a title and the formula."""

from __future__ import annotations

from reportlab.platypus import Flowable, Spacer

from vigie.lib.pdf_style import CERTIFICATE, paragraph, title_bar
from vigie.synthetic.clinic import DocumentSpec, PatientSpec
from vigie.synthetic.payloads import Certificate
from vigie.synthetic.pdf.letterhead import practitioner_header, signature, town
from vigie.synthetic.people import fr_long_date


def draw(spec: DocumentSpec, cert: Certificate, patient: PatientSpec) -> list[Flowable]:
    day = spec.clinical_date
    flow = practitioner_header(cert.author, [])
    flow += [Spacer(1, 30), title_bar(cert.title), Spacer(1, 18)]
    flow += [paragraph(text, CERTIFICATE) for text in cert.paragraphs]
    flow += [
        Spacer(1, 10),
        paragraph(
            f"Fait à {town(cert.author)}, le {fr_long_date(day)}.",
            CERTIFICATE,
        ),
    ]
    flow.append(signature(cert.author, "Signature et cachet du médecin"))
    return flow
