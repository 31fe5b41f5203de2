"""Reconciliation: IT administrators decide where a document without an exact match belongs.

Intake never attaches a document on a guess; what it could not match exactly
waits here. The administrator sees what the sender said (identifiers, names, birth date)
and why nothing matched, never the document itself: IT staff do not read medical
documents (separation of duties), and nothing here goes through the document door.

Anyone but an administrator gets 404, as on the guard page. Attaching makes a document
visible to a patient's doctors, so it needs a fresh second factor: a stolen session cookie
alone must not be enough to file records under a patient.
"""

from __future__ import annotations

from contextlib import suppress
from urllib.parse import urlencode

from django import forms
from django.contrib import messages
from django.db.models import Q
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.formats import date_format
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from vigie.accounts.models import Role, User
from vigie.accounts.reauth import is_second_factor_fresh
from vigie.audit.log import record
from vigie.records.access import ensure_served
from vigie.records.identifiers import InvalidIdentifier, validate_nir
from vigie.records.models import Patient, PendingDocument, PendingStatus
from vigie.records.receive import ReconcileError, attach, candidates, reject

LISTED = 200  # pending documents on the list page; a longer backlog is a problem of its own
RECENT = 20  # recently resolved ones, so a colleague's decision is visible
SEARCH_LIMIT = 10
NOTE_MAX = 500  # PendingDocument.resolution_note


class SearchForm(forms.Form):
    q = forms.CharField(label=gettext_lazy("IPP or INS"), max_length=64, strip=True)


class AttachForm(forms.Form):
    note = forms.CharField(
        label=gettext_lazy("Why this patient (optional)"),
        max_length=NOTE_MAX,
        required=False,
        strip=True,
        widget=forms.Textarea(attrs={"rows": 2}),
    )


class RejectForm(forms.Form):
    note = forms.CharField(
        label=gettext_lazy("Why it is rejected"),
        max_length=NOTE_MAX,
        strip=True,
        widget=forms.Textarea(attrs={"rows": 2}),
        error_messages={"required": gettext_lazy("Say why the document is rejected.")},
    )


def _admin_or_404(request: HttpRequest) -> User:
    user = request.user
    if not isinstance(user, User) or not user.is_authenticated or user.role != Role.ADMIN:
        raise Http404
    # These pages show senders' patient identities and search the clinic's patients: a
    # lockdown stops them like every other path to patient data.
    ensure_served()
    return user


def _waiting_or_404(pending_id: str) -> PendingDocument:
    return get_object_or_404(PendingDocument, pk=pending_id, status=PendingStatus.PENDING)


def search_patients(query: str, limit: int = SEARCH_LIMIT) -> list[Patient]:
    """Patients whose IPP (this clinic's or another system's) or INS is exactly `query`.

    Exact only, like intake's matching: a partial or name search would turn this page
    into a way for IT to browse the patient list.
    """
    query = query.strip()
    if not query:
        return []
    condition = Q(ipp=query) | Q(identifiers__value=query)
    with suppress(InvalidIdentifier):  # not an INS: then an IPP only
        condition |= Q(ins=validate_nir(query))
    return list(Patient.objects.filter(condition).distinct().order_by("family_name")[:limit])


def _reauth(request: HttpRequest, back_to: str) -> HttpResponseRedirect:
    # A POST cannot be replayed after re-authentication: the administrator comes back to
    # the confirmation page and confirms again, knowingly.
    return HttpResponseRedirect(f"{reverse('accounts:reauth')}?{urlencode({'next': back_to})}")


@require_GET
def pending_list(request: HttpRequest) -> HttpResponse:
    user = _admin_or_404(request)
    # The list shows titles, senders' patient identities and where resolved ones went:
    # reading it is on the record, before it is shown.
    record("intake.reconcile.list", request=request, actor=user)
    waiting = PendingDocument.objects.filter(status=PendingStatus.PENDING).order_by("received_at")
    resolved = PendingDocument.objects.exclude(status=PendingStatus.PENDING).order_by(
        "-resolved_at"
    )
    return render(
        request,
        "intake/reconcile_list.html",
        {
            "waiting": list(waiting[:LISTED]),
            "waiting_count": waiting.count(),
            "resolved": list(resolved.select_related("document__patient")[:RECENT]),
        },
    )


@require_GET
def pending_detail(request: HttpRequest, pending_id: str) -> HttpResponse:
    user = _admin_or_404(request)
    pending = _waiting_or_404(pending_id)
    record("intake.reconcile.view", request=request, actor=user, extra={"pending_id": pending.pk})
    search = SearchForm(request.GET if "q" in request.GET else None)
    found: list[Patient] | None = None
    if search.is_valid():
        found = search_patients(search.cleaned_data["q"])
        # Looking patients up is access to identities: on the record, like any lookup.
        record(
            "intake.reconcile.search",
            request=request,
            actor=user,
            extra={
                "pending_id": pending.pk,
                "query": search.cleaned_data["q"],
                "found": len(found),
            },
        )
    return render(
        request,
        "intake/reconcile_detail.html",
        {
            "pending": pending,
            "candidates": candidates(pending),
            "search": search,
            "found": found,
            "reject_form": RejectForm(),
        },
    )


@require_http_methods(["GET", "POST"])
def attach_confirm(request: HttpRequest, pending_id: str, public_id: str) -> HttpResponse:
    """GET: the confirmation naming the patient; POST: attach, with a fresh second factor."""
    user = _admin_or_404(request)
    pending = _waiting_or_404(pending_id)
    patient = get_object_or_404(Patient, public_id=public_id)
    here = reverse("reconcile:attach", args=[pending.pk, patient.public_id])
    if not is_second_factor_fresh(request):
        return _reauth(request, here)
    form = AttachForm(request.POST if request.method == "POST" else None)
    if request.method == "POST" and form.is_valid():
        try:
            attach(pending, patient, by=user, note=form.cleaned_data["note"])
        except ReconcileError:
            # Someone else decided in the meantime (the row is locked, so only one wins).
            messages.error(request, _("This document was already reconciled by someone else."))
            return redirect("reconcile:list")
        messages.success(
            request,
            _("The document “%(title)s” is now in the record of %(patient)s.")
            % {"title": pending.title, "patient": _patient_label(patient)},
        )
        return redirect("reconcile:list")
    return render(
        request,
        "intake/reconcile_attach.html",
        {"pending": pending, "patient": patient, "form": form},
        status=400 if form.is_bound else 200,
    )


@require_POST
def reject_pending(request: HttpRequest, pending_id: str) -> HttpResponse:
    user = _admin_or_404(request)
    pending = _waiting_or_404(pending_id)
    form = RejectForm(request.POST)
    if not form.is_valid():
        return render(
            request,
            "intake/reconcile_detail.html",
            {
                "pending": pending,
                "candidates": candidates(pending),
                "search": SearchForm(),
                "found": None,
                "reject_form": form,
            },
            status=400,
        )
    try:
        reject(pending, by=user, note=form.cleaned_data["note"])
    except ReconcileError:
        messages.error(request, _("This document was already reconciled by someone else."))
        return redirect("reconcile:list")
    messages.success(
        request, _("The document “%(title)s” was rejected.") % {"title": pending.title}
    )
    return redirect("reconcile:list")


def _patient_label(patient: Patient) -> str:
    return _("%(family)s %(given)s, born %(born)s (IPP %(ipp)s)") % {
        "family": patient.family_name.upper(),
        "given": patient.given_names,
        "born": date_format(patient.birth_date, "SHORT_DATE_FORMAT"),
        "ipp": patient.ipp,
    }
