"""{% load intake_words %}: a received document's channel and the reason it was not matched,
as IT reads them, in their language.

The reasons are stored in English, as the sender is told (receive.py writes them once, for the
sender's answer and for the row); the pages translate the known ones here, and show any other
text as it was written.
"""

from __future__ import annotations

import re

from django import template
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

register = template.Library()

CHANNEL_LABELS = {
    "rest": gettext_lazy("REST API"),
    "fhir": gettext_lazy("FHIR API"),
    "hl7": gettext_lazy("HL7 v2 (MLLP)"),
    "mllp": gettext_lazy("HL7 v2 (MLLP)"),
    "hprim": gettext_lazy("HPRIM Santé"),
    "folder": gettext_lazy("Hot folder"),
}

REASON_LABELS = {
    "the INS and the IPP designate two different patients": gettext_lazy(
        "the INS and the IPP designate two different patients"
    ),
    "the INS designates a patient whose IPP here is not the one sent": gettext_lazy(
        "the INS designates a patient whose IPP here is not the one sent"
    ),
    "no patient has this INS here": gettext_lazy("no patient has this INS here"),
    "no patient has this IPP of this clinic": gettext_lazy(
        "no patient has this IPP of this clinic"
    ),
    "no identifier (INS or IPP): names and birth date are never enough": gettext_lazy(
        "no identifier (INS or IPP): names and birth date are never enough"
    ),
}
_IPP_FROM = re.compile(r"^no patient has this IPP from (?P<source>.+)$")


@register.filter
def channel_label(channel: str) -> str:
    label = CHANNEL_LABELS.get(channel)
    return str(label) if label is not None else channel


@register.filter
def pending_reason(reason: str) -> str:
    label = REASON_LABELS.get(reason)
    if label is not None:
        return str(label)
    match = _IPP_FROM.match(reason)
    if match is not None:
        return _("no patient has this IPP from %(source)s") % {"source": match["source"]}
    return reason
