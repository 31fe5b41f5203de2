"""Words for lab flags, so that an abnormal value is said, not only coloured (WCAG 1.4.1)."""

from __future__ import annotations

from django import template
from django.utils.translation import gettext_lazy as _
from django.utils.translation import pgettext_lazy

from vigie.records.results import is_abnormal

register = template.Library()

_WORDS = {
    "L": _("low"),
    "H": _("high"),
    "LL": _("critically low"),
    "HH": _("critically high"),
    "A": _("abnormal"),
    "AA": _("critically abnormal"),
    "<": _("below the detection limit"),
    ">": _("above the measurable range"),
    "N": _("normal"),
    "POS": _("positive"),
    "NEG": _("negative"),
}
_SYMBOLS = {"L": "↓", "H": "↑", "LL": "⇊", "HH": "⇈", "A": "!", "AA": "!!"}
_STATUS = {
    "P": pgettext_lazy("lab result status", "preliminary"),
    "C": pgettext_lazy("lab result status", "corrected"),
    "X": pgettext_lazy("lab result status", "not done"),
    "D": pgettext_lazy("lab result status", "deleted"),
    "I": pgettext_lazy("lab result status", "pending"),
    "R": pgettext_lazy("lab result status", "not verified"),
    "W": pgettext_lazy("lab result status", "wrong"),
}


@register.filter
def flag_words(flag: str) -> str:
    """ "H" → "high"; unknown flags as sent."""
    parts = [str(_WORDS.get(part, part)) for part in (flag or "").upper().split()]
    return ", ".join(parts)


@register.filter
def flag_symbol(flag: str) -> str:
    return "".join(_SYMBOLS.get(part, "") for part in (flag or "").upper().split())


@register.filter
def flag_abnormal(flag: str) -> bool:
    return is_abnormal(flag or "")


@register.filter
def status_words(status: str) -> str:
    """Final results say nothing; any other status is said."""
    return str(_STATUS.get((status or "").upper(), ""))
