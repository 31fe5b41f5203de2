"""What an alert says to the person reading it, in their language, and where to look next.

An alert's stored `summary` is written once, when it is raised (often by a daemon with no
user and no language), and it also leaves the building by e-mail or webhook. The pages
instead describe each known kind from its `details`, through the translation catalog, so a
French DPO reads "Accès d'urgence de … au patient …" and never a code; an unknown kind keeps
its summary under a translated heading. `report_url` is the audit report to open for it.
"""

from __future__ import annotations

from typing import Any

from django.urls import reverse
from django.utils.dateparse import parse_datetime
from django.utils.formats import date_format
from django.utils.timezone import localtime
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from vigie.alerts.models import Alert

# A heading per kind: what happened, in a few words.
KIND_LABELS = {
    "emergency.access": gettext_lazy("Emergency access"),
    "guard.canary.touched": gettext_lazy("Decoy record touched"),
    "canary.touched": gettext_lazy("Decoy record touched"),
    "access.off_hours_download": gettext_lazy("Download outside working hours"),
    "access.many_patients": gettext_lazy("Many patients opened"),
    "access.crawler": gettext_lazy("Reads at machine speed"),
    "access.denials": gettext_lazy("Repeated refusals"),
    "account.role_changed": gettext_lazy("Role changed"),
    "account.created": gettext_lazy("Account created"),
    "account.reset": gettext_lazy("Account reset"),
    "system.login.sustained_failures": gettext_lazy("Repeated failed logins"),
    "vault.integrity": gettext_lazy("Document cannot be decrypted"),
    "guard.lockdown": gettext_lazy("Lockdown"),
    "guard.probe.exposure": gettext_lazy("Exposure seen from outside"),
    "guard.probe.failed": gettext_lazy("Outside probe failed"),
    "guard.probe.warning": gettext_lazy("Outside probe warning"),
    "guard.silence": gettext_lazy("Guard silent"),
    "guard.window.still_open": gettext_lazy("Maintenance window still open"),
}


def _when(value: Any) -> str:
    moment = parse_datetime(value) if isinstance(value, str) else None
    return date_format(localtime(moment), "SHORT_DATETIME_FORMAT") if moment else ""


def kind_label(alert: Alert) -> str:
    label = KIND_LABELS.get(alert.kind)
    return str(label) if label is not None else _("Other alert")


def describe(alert: Alert) -> str:
    """One sentence saying what happened, translated; the stored summary for unknown kinds."""
    d = alert.details if isinstance(alert.details, dict) else {}
    kind = alert.kind
    if kind == "emergency.access" and d.get("doctor"):
        return _("Emergency access by %(doctor)s to patient %(patient)s, until %(until)s") % {
            "doctor": d["doctor"],
            "patient": d.get("patient_ipp") or d.get("patient_ref") or "?",
            "until": _when(d.get("expires_at")),
        }
    who = d.get("actor") or d.get("address") or d.get("source_ip")
    if kind in ("guard.canary.touched", "canary.touched") and who:
        return _("Decoy record opened by %(who)s") % {"who": who}
    if kind == "access.off_hours_download" and d.get("actor"):
        return _("%(who)s downloaded a document at %(when)s") % {
            "who": d["actor"],
            "when": _when(d.get("at")),
        }
    if kind == "access.many_patients" and "patients" in d:
        return _("%(who)s opened the records of %(count)s patients in a few minutes") % {
            "who": d.get("actor") or _actor_from(alert),
            "count": d["patients"],
        }
    if kind == "access.crawler" and "reads_last_minute" in d:
        return _("%(who)s made %(count)s reads in one minute") % {
            "who": d.get("actor") or _actor_from(alert),
            "count": d["reads_last_minute"],
        }
    if kind == "access.denials" and "denied" in d:
        if d.get("source_ip"):
            return _("%(count)s refused requests from the address %(address)s") % {
                "count": d["denied"],
                "address": d["source_ip"],
            }
        return _("%(who)s was refused %(count)s times in a few minutes") % {
            "who": d.get("actor") or _actor_from(alert),
            "count": d["denied"],
        }
    return alert.summary


def _actor_from(alert: Alert) -> str:
    # Alerts raised before the rules copied the username into their details: the summary
    # starts with it.
    return alert.summary.split(" ", 1)[0] if alert.summary else "?"


def report_url(alert: Alert) -> str | None:
    """The audit report to open for this alert (the patient's, else the person's), if any."""
    d = alert.details if isinstance(alert.details, dict) else {}
    if alert.kind in ("guard.canary.touched", "canary.touched"):
        # Only the person: a decoy's own report would be one more touch of the decoy.
        actor = d.get("actor")
        if actor and actor != "anonymous":
            return reverse("audit:actor_report", args=[actor])
        return None
    ipp = d.get("patient_ipp")
    if alert.kind == "emergency.access" and ipp:
        return reverse("audit:patient_report", args=[ipp])
    actor = d.get("actor") or d.get("doctor")
    if not actor and alert.kind.startswith("access.") and not d.get("source_ip"):
        actor = _actor_from(alert)
    if actor and actor != "?":
        return reverse("audit:actor_report", args=[actor])
    if ipp:
        return reverse("audit:patient_report", args=[ipp])
    return None
