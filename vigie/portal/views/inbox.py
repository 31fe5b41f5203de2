"""The results inbox ("Nouveaux documents") and its two "mark as read" actions."""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.core.paginator import Paginator
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.functional import cached_property
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext as _
from django.utils.translation import ngettext
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST

from vigie.accounts.models import Role
from vigie.portal import inbox
from vigie.portal.door import inbox_listing
from vigie.portal.errors import fail_closed_without_audit
from vigie.portal.scope import document_in_scope_or_404, patient_in_scope_or_404
from vigie.portal.services import PAGE_SIZE
from vigie.records.models import Document, Patient


class MarkPatientReadForm(forms.Form):
    # When the page that offered the button was drawn: documents received later were not on
    # it, so they stay unread.
    before = forms.DateTimeField()


class _CountedPaginator(Paginator[Document]):
    """A paginator told its total: the per-patient counts already gave it, and counting
    again would walk the doctor's documents once more."""

    def __init__(self, object_list: QuerySet[Document], per_page: int, total: int) -> None:
        super().__init__(object_list, per_page)
        self._total = total

    @cached_property
    def count(self) -> int:
        return self._total


@require_GET
@never_cache
@fail_closed_without_audit
def inbox_page(request: HttpRequest) -> HttpResponse:
    if getattr(request.user, "role", None) != Role.DOCTOR:
        return render(request, "portal/home_not_doctor.html")
    drawn_at = timezone.now()
    counts = inbox.unread_counts(request.user)
    total = sum(counts.values())
    page = _CountedPaginator(inbox.inbox_documents(request.user), PAGE_SIZE, total).get_page(
        request.GET.get("page")
    )
    documents: list[Document] = list(page)
    patients = Patient.objects.filter(pk__in=list(counts)).order_by(
        "search_key", "birth_date", "pk"
    )
    # Audited (one `inbox.view` per patient) before the titles and flags are shown.
    markers = inbox_listing(request, documents, page.number)
    for document in documents:
        document.result_marker = markers.get(document.pk, "")  # type: ignore[attr-defined]
    return render(
        request,
        "portal/inbox.html",
        {
            "page": page,
            "documents": documents,
            "per_patient": [(patient, counts[patient.pk]) for patient in patients],
            "drawn_at": drawn_at.isoformat(),
            # The header's count, already known (see portal/templatetags/inbox_tags.py).
            "unread_total": total,
        },
    )


@require_POST
@never_cache
@fail_closed_without_audit
def mark_document_read(request: HttpRequest, doc_id: str) -> HttpResponseRedirect:
    # "list" is enough: marking is not reading, and needs what seeing it in a list needs.
    document, _decision = document_in_scope_or_404(request, doc_id, "list")
    marked = inbox.mark_read(request, Document.objects.filter(pk=document.pk), scope="document")
    if marked:
        messages.success(request, _("“%(title)s” is marked as read.") % {"title": document.title})
    return _back(request)


@require_POST
@never_cache
@fail_closed_without_audit
def mark_patient_read(request: HttpRequest, public_id: str) -> HttpResponseRedirect:
    patient, _decision = patient_in_scope_or_404(request, public_id, "list")
    form = MarkPatientReadForm(request.POST)
    if not form.is_valid():
        messages.error(request, _("This request was incomplete: nothing was marked as read."))
        return _back(request)
    documents = inbox.unread_of_patient(request.user, patient, form.cleaned_data["before"])
    marked = inbox.mark_read(request, documents, scope="patient")
    messages.success(
        request,
        ngettext(
            "%(count)d document of %(name)s is marked as read.",
            "%(count)d documents of %(name)s are marked as read.",
            marked,
        )
        % {"count": marked, "name": f"{patient.family_name.upper()} {patient.given_names}"},
    )
    return _back(request)


def _back(request: HttpRequest) -> HttpResponseRedirect:
    """To the page the button was on (this site's pages only), else the inbox."""
    target = request.POST.get("next", "")
    if target and url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return redirect(target)
    return redirect(reverse("portal:inbox"))
