"""Forms of the physician portal. Labels are English msgids, translated (French first)."""

from __future__ import annotations

from datetime import date
from typing import Any

from django import forms
from django.http import QueryDict
from django.utils.translation import gettext_lazy as _

from vigie.portal.services import TimelineFilter
from vigie.records.identifiers import InvalidIdentifier, validate_ipp, validate_nir
from vigie.records.models import (
    EMERGENCY_JUSTIFICATION_MIN_LENGTH,
    DocumentKind,
    EmergencyReason,
)


class DateInput(forms.DateInput):
    # The browser's own date picker: keyboard-accessible, no script of ours.
    input_type = "date"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(format="%Y-%m-%d", **kwargs)


class PatientSearchForm(forms.Form):
    """Search among the doctor's own patients: a partial name is fine here, because the
    result set can only ever be the doctor's scope."""

    q = forms.CharField(
        label=_("Name, IPP, INS or birth date"),
        required=False,
        max_length=150,
        widget=forms.TextInput(attrs={"type": "search", "autocomplete": "off"}),
    )
    birth_date = forms.DateField(label=_("Birth date"), required=False, widget=DateInput())


class TimelineFilterForm(forms.Form):
    kind = forms.MultipleChoiceField(
        label=_("Kinds"),
        required=False,
        choices=DocumentKind.choices,
        widget=forms.CheckboxSelectMultiple,
    )
    text = forms.CharField(
        label=_("Words in the title, author or source"),
        required=False,
        max_length=100,
        widget=forms.TextInput(attrs={"type": "search", "autocomplete": "off"}),
    )
    date_from = forms.DateField(label=_("From"), required=False, widget=DateInput())
    date_to = forms.DateField(label=_("To"), required=False, widget=DateInput())
    sort = forms.ChoiceField(
        label=_("Order"),
        required=False,
        choices=[
            ("-date", _("Most recent first")),
            ("date", _("Oldest first")),
            ("kind", _("By kind")),
        ],
    )

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        start, end = data.get("date_from"), data.get("date_to")
        if isinstance(start, date) and isinstance(end, date) and start > end:
            raise forms.ValidationError(_("The start date is after the end date."))
        return data

    def filters(self) -> TimelineFilter | None:
        """What to list: everything when nothing is asked, None (list nothing) when what is
        asked is wrong, e.g. a reversed date range — a list that silently ignored the
        filter would look like the answer to it."""
        if not self.is_bound:
            return TimelineFilter()
        if not self.is_valid():
            return None
        data = self.cleaned_data
        return TimelineFilter(
            kinds=tuple(data["kind"]),
            text=data["text"],
            date_from=data["date_from"],
            date_to=data["date_to"],
            sort=data["sort"] or "-date",
        )


def timeline_form(query: QueryDict) -> TimelineFilterForm:
    """The timeline's filter form from a query string (the page's own, or the one the viewer
    carries along for previous/next); unbound when it holds no filter at all."""
    wanted = {name for name in query if name in TimelineFilterForm.base_fields}
    return TimelineFilterForm(query if wanted else None)


class EmergencyLookupForm(forms.Form):
    """Outside one's scope a patient is found by an exact identifier only: the INS, or the
    IPP together with the birth date. No name search: browsing the clinic's patient list
    by name is exactly what break-the-glass must not allow."""

    ins = forms.CharField(label=_("INS (national health id)"), required=False, max_length=32)
    ipp = forms.CharField(label=_("IPP (local patient id)"), required=False, max_length=64)
    birth_date = forms.DateField(label=_("Birth date"), required=False, widget=DateInput())

    def clean_ins(self) -> str:
        raw = self.cleaned_data.get("ins") or ""
        if not raw:
            return ""
        try:
            return validate_nir(raw)
        except InvalidIdentifier:
            # Shape only (no database lookup): says nothing about who is a patient here.
            raise forms.ValidationError(_("This is not a valid INS.")) from None

    def clean_ipp(self) -> str:
        raw = self.cleaned_data.get("ipp") or ""
        if not raw:
            return ""
        try:
            return validate_ipp(raw)
        except InvalidIdentifier:
            raise forms.ValidationError(_("This is not a valid IPP.")) from None

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if self.errors:
            return data
        if not data.get("ins") and not data.get("ipp"):
            raise forms.ValidationError(_("Give the INS, or the IPP with the birth date."))
        if data.get("ipp") and not data.get("ins") and not data.get("birth_date"):
            raise forms.ValidationError(_("An IPP is only accepted together with the birth date."))
        return data


class EmergencyGrantForm(forms.Form):
    # data-keep: typed text survives an expired session (static/vigie/session.js).
    reason = forms.ChoiceField(
        label=_("Reason"),
        choices=EmergencyReason.choices,
        widget=forms.Select(attrs={"data-keep": ""}),
    )
    justification = forms.CharField(
        label=_("Justification"),
        min_length=EMERGENCY_JUSTIFICATION_MIN_LENGTH,
        max_length=2000,
        widget=forms.Textarea(attrs={"rows": 4, "data-keep": ""}),
        help_text=_(
            "Describe the situation for the data protection officer, who reviews every "
            "emergency access."
        ),
    )
    code = forms.CharField(
        label=_("Second-factor code"),
        max_length=32,
        widget=forms.TextInput(attrs={"autocomplete": "one-time-code"}),
        help_text=_("A code from your authenticator app, or an unused recovery code."),
    )
