"""French patient identifiers: the NIR (social security number, the basis of the INS) and IPP.

The INS ("identifiant national de santé") of a person born in France is their NIR: 13
characters plus a 2-digit key equal to 97 - (number mod 97). For people born in Corsica the
department is 2A or 2B, which the key computation replaces by 19 and 18 (INSEE rule).
We validate the key so a mistyped INS is refused at entry instead of matching nobody later.
"""

from __future__ import annotations

import re

_NIR_RE = re.compile(r"^([12378])(\d{2})(\d{2})(\d{2}|2A|2B)(\d{3})(\d{3})(\d{2})$")
_IPP_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


class InvalidIdentifier(ValueError):
    """The identifier is malformed; the message says why in words a clerk understands."""


def normalize_nir(raw: str) -> str:
    """Strip the spaces, dots and dashes people type; upper-case the Corsican letters."""
    return re.sub(r"[\s.\-]", "", raw).upper()


def _numeric_body(nir13: str) -> int:
    # Corsica: 2A -> 19, 2B -> 18 for the key computation only.
    return int(nir13.replace("2A", "19").replace("2B", "18"))


def nir_key(nir13: str) -> int:
    """The control key of the first 13 characters of a NIR."""
    return 97 - (_numeric_body(nir13) % 97)


def validate_nir(raw: str) -> str:
    """Return the normalised 15-character NIR or raise `InvalidIdentifier`."""
    nir = normalize_nir(raw)
    match = _NIR_RE.match(nir)
    if match is None:
        raise InvalidIdentifier(
            "an INS/NIR has 15 characters: sex, year, month, department, commune, order, key"
        )
    month = int(match.group(3))
    # Months 01-12 are real; 20-42 and 50-99 are used when the birth month is unknown.
    if not (1 <= month <= 12 or 20 <= month <= 42 or 50 <= month <= 99):
        raise InvalidIdentifier(f"an INS/NIR cannot have month {match.group(3)}")
    if nir_key(nir[:13]) != int(match.group(7)):
        raise InvalidIdentifier("the INS/NIR control key does not match: check for a typo")
    return nir


def validate_ipp(raw: str) -> str:
    """An IPP is the clinic's local patient number: short, printable, no spaces."""
    ipp = raw.strip()
    if not _IPP_RE.match(ipp):
        raise InvalidIdentifier("an IPP is 1 to 64 letters, digits, dots, dashes or underscores")
    return ipp
