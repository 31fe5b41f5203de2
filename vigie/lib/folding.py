"""Folding text for search: accents, case, punctuation and spacing do not count.

Model-free so that the Patient model, its data migration and the search agree on one
definition, on SQLite and PostgreSQL alike (no `unaccent` extension to install).
"""

from __future__ import annotations

import re
import unicodedata

# Letters NFKD does not decompose but French names use ("Œ" in "CŒUR", "Æ" in "LÆTITIA").
_LIGATURES = str.maketrans({"œ": "oe", "Œ": "oe", "æ": "ae", "Æ": "ae"})
_NOT_ALNUM = re.compile(r"[^0-9a-z]+")


def fold(text: str) -> str:
    """ "Le Maréchal-Bègue" → "le marechal begue": lower case ASCII letters and digits,
    every other run of characters (spaces, hyphens, apostrophes) a single space."""
    decomposed = unicodedata.normalize("NFKD", text.translate(_LIGATURES))
    stripped = "".join(c for c in decomposed if not unicodedata.combining(c))
    return _NOT_ALNUM.sub(" ", stripped.casefold()).strip()


def fold_compact(text: str) -> str:
    """fold() without the spaces: "Le Gall", "LE-GALL" and "legall" are one."""
    return fold(text).replace(" ", "")
