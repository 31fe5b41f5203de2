"""Whether a NIR can be the number of the person a file describes.

The NIR line of an HPRIM file is often the insured person's: a child's results travel under a
parent's number. Matching on that number alone would file a child's results in the parent's
record. The NIR encodes sex (first digit) and year and month of birth (digits 2-5), so a NIR
that contradicts the file's birth date, or the sex of the record it would match, is not the
patient's and must not match. A NIR that agrees is still only as good as the file says; the
matcher decides.
"""

from __future__ import annotations

import datetime

from vigie.records.identifiers import InvalidIdentifier, validate_nir

# First digit: 1 and 2 are men and women born in France or registered; 7 and 8 the same for
# temporary numbers (NIA). 3 and 4 carry no reliable sex, so we do not judge them.
_SEX_OF_DIGIT = {"1": "M", "2": "F", "7": "M", "8": "F"}


def nir_contradiction(nir: str, birth_date: datetime.date, sex: str | None = None) -> str | None:
    """Why `nir` cannot belong to a person born on `birth_date` of `sex`, or None if it can.

    `sex` is "M", "F", or anything else for unknown (then only the birth date is checked). A
    NIR whose key does not check out is a contradiction in itself.
    """
    try:
        valid = validate_nir(nir)
    except InvalidIdentifier as exc:
        return f"the NIR is not valid: {exc}"
    expected_sex = _SEX_OF_DIGIT.get(valid[0])
    if sex in ("M", "F") and expected_sex is not None and sex != expected_sex:
        return "the NIR is a man's and the patient a woman's, or the reverse"
    if int(valid[1:3]) != birth_date.year % 100:
        return "the NIR's year of birth differs from the birth date"
    month = int(valid[3:5])
    # Months 20-42 and 50-99 stand for an unknown month of birth: nothing to compare.
    if 1 <= month <= 12 and month != birth_date.month:
        return "the NIR's month of birth differs from the birth date"
    return None
