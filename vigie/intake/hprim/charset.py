"""Which character set an HPRIM file was written in, since the file never says.

Laboratories write HPRIM with whatever their software was built on: ISO-8859-1 or Windows-1252
(most), CP850 (DOS-era software still in service), MacRoman, UTF-8 with or without a BOM,
UTF-16 with a BOM. The rule, in order:

1. A byte-order mark decides: UTF-8, UTF-16 LE or BE.
2. NUL bytes without a BOM mean UTF-16 we cannot orient: refused, never guessed.
3. Bytes that decode as strict UTF-8 are UTF-8 (plain ASCII included). Legacy 8-bit French text
   almost never forms valid multi-byte UTF-8 sequences by accident ("Ã©" would need two
   accented capitals in a row).
4. Otherwise each 8-bit candidate decodes the bytes and is scored on how French its non-ASCII
   characters look *in context*: a lower-case accented letter inside a lower-case word scores,
   an accented capital between a capital and a lower-case letter ("HÈmoglobine", which is
   "Hémoglobine" in Latin-1 read as MacRoman) costs. The best score wins; ties go to the most
   common charset first. When no byte falls in 0x80-0x9F, ISO-8859-1 and Windows-1252 decode
   alike and we name it ISO-8859-1.

An accent inside a word decides reliably (in CP850 "é" is 0x82, which MacRoman reads as
"Ç": a capital inside a lower-case word). An accent opening a word does not: MacRoman "être"
reads "Étre" in CP850. A guess can therefore be wrong on a file whose only accents open words; the stored document keeps the
bytes as received, so a wrong guess never loses data, it only misspells a name on screen.
"""

from __future__ import annotations

import codecs
import re

# Letters and signs that French lab reports actually contain.
_FRENCH_LOWER = frozenset("àâçéèêëîïôùûüÿœ")
_FRENCH_UPPER = frozenset("ÀÂÇÉÈÊËÎÏÔÙÛÜŸŒ")
_SIGNS = frozenset("°µ€’‘“”«»²³±×÷§–—…·\u00a0")
# How much more often a letter shows up in French text (é far ahead): it decides between two
# charsets whose readings are both French-looking letters.
_WEIGHT = {"é": 6, "à": 4, "è": 3, "ü": 1, "ÿ": 1}
_STARTS = {"é": 6, "ê": 2, "â": 1, "î": 1, "ô": 1, "œ": 2}
_NON_ASCII = re.compile(r"[^\x00-\x7f]")
# Order of preference when two candidates score the same.
_LEGACY = ("iso-8859-1", "windows-1252", "cp850", "mac-roman")


class UndecodableText(ValueError):
    """The bytes are not text in any charset we read."""


def _score(text: str) -> int:
    score = 0
    length = len(text)
    # Only the non-ASCII characters are scored: a regex finds them without a Python-level
    # loop over the (mostly ASCII) report.
    for found in _NON_ASCII.finditer(text):
        index, char = found.start(), found.group()
        before = text[index - 1] if index else " "
        after = text[index + 1] if index + 1 < length else " "
        if char in _FRENCH_LOWER:
            # Only "à" stands alone as a word; few accented letters open one ("école", "être",
            # "âge", "île", "œdème"); "HéMATIES" is odd, "hémoglobine" is French.
            starts = not before.isalpha()
            if starts and not after.isalpha():
                score += 4 if char == "à" else -3
            elif starts:
                score += _STARTS.get(char, -3)
            elif before.isupper() and after.isupper():
                score -= 3
            else:
                score += _WEIGHT.get(char, 2)
        elif char in _FRENCH_UPPER:
            # An accented capital opens a word or sits among capitals: never after a lower-case
            # letter, never before one in the middle of a word.
            odd = before.islower() or (before.isalpha() and after.islower())
            score += -3 if odd else 2
        elif char in _SIGNS:
            score += 1
        else:
            score -= 3
    return score


def decode(raw: bytes) -> tuple[str, str]:
    """Return the text and the name of the charset it was read in."""
    if raw.startswith(codecs.BOM_UTF8):
        return _strict(raw[len(codecs.BOM_UTF8) :], "utf-8"), "utf-8-sig"
    if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return _strict(raw, "utf-16"), "utf-16"
    if b"\x00" in raw:
        raise UndecodableText(
            "the file contains NUL bytes: UTF-16 needs a byte-order mark, "
            "other charsets never contain NUL"
        )
    try:
        return raw.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        pass
    best: tuple[int, str, str] | None = None
    for rank, name in enumerate(_LEGACY):
        try:
            text = raw.decode(name)
        except UnicodeDecodeError:
            continue
        if name == "iso-8859-1" and any(0x80 <= byte <= 0x9F for byte in raw):
            # C1 control characters: Latin-1 only in name, Windows-1252 in fact.
            continue
        score = _score(text) * len(_LEGACY) - rank
        if best is None or score > best[0]:
            best = (score, name, text)
    if best is None:  # pragma: no cover - MacRoman and CP850 decode every byte
        raise UndecodableText("the file is not text in any charset laboratories use")
    return best[2], best[1]


def _strict(raw: bytes, encoding: str) -> str:
    try:
        return raw.decode(encoding)
    except UnicodeDecodeError as exc:
        raise UndecodableText(
            f"the file starts with a {encoding.upper()} byte-order mark but byte "
            f"{exc.start} is not valid {encoding.upper()}"
        ) from exc
