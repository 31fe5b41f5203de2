"""Draw the synthetic documents as PDFs that look like what a French clinic really receives,
one module per kind of document, in Vigie's one house style (`vigie.lib.pdf_style`).

Pure layout: every value and sentence is already in the `DocumentSpec`'s payload, so the same
spec always gives the same bytes (reportlab's `invariant` mode fixes the creation date and the
document id that it would otherwise take from the clock).

The content writes "coeur", not the ligature, so every string fits Helvetica's Windows-1252
and text search and extraction never depend on it (a test checks every string fits the
encoding). A demo document carries a small "Document fictif" footer on every page so nobody
mistakes it for a real record; a decoy's does not.
"""

from __future__ import annotations

from reportlab.platypus import Flowable

from vigie.lib.pdf_style import build, footer
from vigie.synthetic.clinic import DocumentSpec, PatientSpec
from vigie.synthetic.payloads import ImagingReport, LabReport, Letter, Prescription
from vigie.synthetic.pdf import certificates, imaging, lab, letters, prescriptions
from vigie.synthetic.pdf.letterhead import FICTITIOUS_NOTICE


def render_document(spec: DocumentSpec, patient: PatientSpec, *, fictitious: bool = True) -> bytes:
    """The PDF of `spec` for `patient`; byte-identical for equal arguments.

    `fictitious=False` leaves out the demo notice (footer and metadata): decoy documents must
    not tell a thief who got their bytes that they are decoys.
    """
    if spec.patient_ipp != patient.ipp:
        raise ValueError(
            f"document {spec.external_id} belongs to {spec.patient_ipp}, not {patient.ipp}"
        )
    payload = spec.payload
    flow: list[Flowable]
    if isinstance(payload, LabReport):
        flow = lab.draw(spec, payload, patient)
    elif isinstance(payload, ImagingReport):
        flow = imaging.draw(spec, payload, patient)
    elif isinstance(payload, Letter):
        flow = letters.draw(spec, payload, patient)
    elif isinstance(payload, Prescription):
        flow = prescriptions.draw(spec, payload, patient)
    else:
        flow = certificates.draw(spec, payload, patient)
    notice = FICTITIOUS_NOTICE if fictitious else ""
    return build(
        flow,
        footer(f"{spec.source_system} · {spec.external_id}", notice),
        title=f"{spec.title} — {patient.family_name.upper()} {patient.first_given_name}",
        author=spec.author,
        subject=FICTITIOUS_NOTICE if fictitious else spec.title,
        creator="Vigie (démonstration)" if fictitious else spec.source_system,
        keywords="document fictif, démonstration" if fictitious else "",
    )
