"""What an HPRIM patient header lets the matcher use: `sender_for()` builds the `Sender`
that `records.receive` matches on.

The NIR of an HPRIM header is often the insured person's (a child under a parent's number, a
spouse's number), and the header has no sex line. So the NIR is offered for an exact match
only when it can be this patient's:

- its key checks out (a 13-character NIR without key never matches: a typo would be someone
  else's valid number);
- its year and month of birth agree with the header's birth date (`nir_contradiction`);
- and, when a patient here already holds that NIR, their birth date is the header's and
  their sex the NIR's: otherwise the number is that patient's, the results someone else's.

Otherwise the document goes to reconciliation with the names and birth date, which never
attach a document on their own.

Not model-free (it looks the NIR up), so the package's `__init__` does not import it.
"""

from __future__ import annotations

from vigie.records.receive import Sender, patient_by_ins

from .identity import nir_contradiction
from .result import PatientReport


def matchable_nir(report: PatientReport) -> str | None:
    """The header's NIR if it can be this patient's, else None (see the module docstring)."""
    nir = report.nir
    if nir is None or nir_contradiction(nir, report.birth_date) is not None:
        return None
    # As `records.receive.match_patient` looks the INS up (once per round in a folder round).
    holder = patient_by_ins(nir)
    if holder is None:
        return nir
    if holder.birth_date != report.birth_date:
        return None
    if nir_contradiction(nir, report.birth_date, holder.sex) is not None:
        return None
    return nir


def sender_for(report: PatientReport) -> Sender:
    """The identification `records.receive` matches on, for one patient of an HPRIM file."""
    return Sender(
        ins=matchable_nir(report),
        family_name=report.family_name,
        given_names=report.given_name,
        birth_date=report.birth_date,
    )
