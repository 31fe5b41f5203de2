"""The audit trail's codes as people read them: action tags, roles and outcomes, translated.

Events store namespaced tags (`document.read`), which stay the codes of the exports (CSV,
FHIR) that machines read. Every page and the PDF, which people read, go through these labels:
a French DPO reads "Lecture d'un document", never `document.read`. An unknown tag (one added
later without a label here) is shown as "Other event (tag)" rather than as a bare code, and a
test walks the tags the code records so that none is forgotten silently.
"""

from __future__ import annotations

from django.utils.functional import Promise
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

ACTION_LABELS: dict[str, Promise] = {
    # records
    "document.read": gettext_lazy("Document read"),
    "document.view": gettext_lazy("Document page opened"),
    "document.download": gettext_lazy("Document downloaded"),
    "document.read.denied": gettext_lazy("Document read refused"),
    "document.read.failed": gettext_lazy("Document read failed"),
    "document.marked_read": gettext_lazy("Document marked as read"),
    "inbox.view": gettext_lazy("New documents listed"),
    "patient.view": gettext_lazy("Patient record opened"),
    "patient.view.denied": gettext_lazy("Patient record refused"),
    "export.patient": gettext_lazy("Patient record exported"),
    "emergency.lookup": gettext_lazy("Emergency access: patient looked up"),
    "emergency.grant": gettext_lazy("Emergency access granted"),
    "emergency.grant.denied": gettext_lazy("Emergency access refused"),
    "access.grant": gettext_lazy("Patient care started"),
    "access.revoke": gettext_lazy("Patient care ended"),
    "access.change": gettext_lazy("Patient care changed"),
    # intake
    "intake.document.stored": gettext_lazy("Document received"),
    "intake.fhir.create": gettext_lazy("Document received (FHIR)"),
    "intake.received": gettext_lazy("Sending received"),
    "intake.pending": gettext_lazy("Document waiting to be reconciled"),
    "intake.rejected": gettext_lazy("Sending rejected"),
    "intake.duplicate": gettext_lazy("Sending received twice"),
    "intake.replayed": gettext_lazy("Sending repeated (answered from memory)"),
    "import.csv": gettext_lazy("File imported"),
    "intake.fhir.refused": gettext_lazy("FHIR sending refused"),
    "intake.fhir.read_refused": gettext_lazy("FHIR read refused"),
    "intake.mllp.refused": gettext_lazy("HL7 message refused"),
    "intake.mllp.started": gettext_lazy("HL7 listener started"),
    "intake.mllp.stopped": gettext_lazy("HL7 listener stopped"),
    "intake.apikey.created": gettext_lazy("API key created"),
    "intake.apikey.revoked": gettext_lazy("API key revoked"),
    "intake.apikey.refused": gettext_lazy("API key refused"),
    "intake.mllp_sender.created": gettext_lazy("HL7 sender created"),
    "intake.mllp_sender.revoked": gettext_lazy("HL7 sender revoked"),
    "intake.openapi.read": gettext_lazy("API description read"),
    "intake.reconcile.list": gettext_lazy("Documents to reconcile listed"),
    "intake.reconcile.view": gettext_lazy("Document to reconcile opened"),
    "intake.reconcile.search": gettext_lazy("Patient searched for reconciliation"),
    "intake.reconcile.attach": gettext_lazy("Document attached to a patient"),
    "intake.reconcile.reject": gettext_lazy("Document to reconcile rejected"),
    # accounts
    "login.success": gettext_lazy("Password accepted"),
    "login.failure": gettext_lazy("Login failed"),
    "login.locked": gettext_lazy("Login locked"),
    "login.delayed": gettext_lazy("Login delayed"),
    "login.sustained_failures": gettext_lazy("Repeated failed logins"),
    "login.lockout_reset": gettext_lazy("Login lock lifted"),
    "login.method_refused": gettext_lazy("Sign-in method not allowed for this role"),
    "passkey.registered": gettext_lazy("Passkey registered"),
    "passkey.registration_refused": gettext_lazy("Passkey registration refused"),
    "passkey.used": gettext_lazy("Login with a passkey"),
    "passkey.refused": gettext_lazy("Passkey refused"),
    "passkey.clone_suspected": gettext_lazy("Cloned passkey suspected"),
    "passkey.revoked": gettext_lazy("Passkey revoked"),
    "psc.refused": gettext_lazy("Pro Santé Connect sign-in refused"),
    "psc.backchannel_logout": gettext_lazy("Logout requested by Pro Santé Connect"),
    "mfa.success": gettext_lazy("Login completed (second factor)"),
    "mfa.failure": gettext_lazy("Second factor refused"),
    "mfa.enrolled": gettext_lazy("Authenticator app enrolled"),
    "mfa.recovery_code_used": gettext_lazy("Recovery code used"),
    "mfa.recovery_codes_renewed": gettext_lazy("Recovery codes renewed"),
    "logout": gettext_lazy("Logout"),
    "session.expired": gettext_lazy("Session expired"),
    "password.changed": gettext_lazy("Password changed"),
    "password.change_refused": gettext_lazy("Password change refused"),
    "account.created": gettext_lazy("Account created"),
    "account.reset": gettext_lazy("Account reset"),
    "account.role_changed": gettext_lazy("Role changed"),
    "account.invitation.issued": gettext_lazy("Invitation issued"),
    "account.invitation.used": gettext_lazy("Invitation used"),
    "account.invitation.refused": gettext_lazy("Invitation refused"),
    # backups and keys
    "backup.create": gettext_lazy("Backup made"),
    "backup.verify": gettext_lazy("Backup checked"),
    "backup.restore": gettext_lazy("Backup restored"),
    "keys.export": gettext_lazy("Keys exported"),
    "keys.move": gettext_lazy("Keys moved"),
    # audit and alerts
    "audit.dashboard.view": gettext_lazy("Audit dashboard opened"),
    "audit.report.patient": gettext_lazy("Patient access report opened"),
    "audit.report.actor": gettext_lazy("User activity report opened"),
    "audit.patient_search": gettext_lazy("Patient searched for an audit report"),
    "alert.acknowledge": gettext_lazy("Alert acknowledged"),
    # guard
    "guard.canary.touched": gettext_lazy("Decoy record touched"),
    "guard.canary.probed": gettext_lazy("Decoy checked by the outside probe"),
    "guard.canary.created": gettext_lazy("Decoy record created"),
    "guard.started": gettext_lazy("Guard started"),
    "guard.stopped": gettext_lazy("Guard stopped"),
    "guard.silence": gettext_lazy("Guard silent"),
    "guard.host.forgotten": gettext_lazy("Guard host retired"),
    "guard.lockdown.engaged": gettext_lazy("Lockdown engaged"),
    "guard.lockdown.cleared": gettext_lazy("Lockdown lifted"),
    "guard.probe.exposure": gettext_lazy("Exposure seen from outside"),
    "guard.drift.detected": gettext_lazy("Firewall change detected"),
    "guard.drift.persisted": gettext_lazy("Firewall change persists"),
    "guard.drift.resolved": gettext_lazy("Firewall change resolved"),
    "guard.drift.rebaselined": gettext_lazy("Firewall reference updated"),
    "guard.table.repaired": gettext_lazy("Firewall table repaired"),
    "maintenance.window.opened": gettext_lazy("Maintenance window opened"),
    "maintenance.window.closed": gettext_lazy("Maintenance window closed"),
    "maintenance.window.expired": gettext_lazy("Maintenance window expired"),
    "maintenance.window.extended": gettext_lazy("Maintenance window extended"),
    "maintenance.window.verified": gettext_lazy("Maintenance window checked"),
    "maintenance.window.vanished": gettext_lazy("Maintenance window vanished"),
    "maintenance.window.unknown_removed": gettext_lazy("Unknown opening removed"),
}

# Pages of the administration, recorded as admin.<app>.<model>.<step>.
_ADMIN_STEPS: dict[str, Promise] = {
    "list": gettext_lazy("Administration: list of %(what)s"),
    "view": gettext_lazy("Administration: %(what)s opened"),
    "change": gettext_lazy("Administration: %(what)s changed"),
    "add": gettext_lazy("Administration: %(what)s added"),
    "delete": gettext_lazy("Administration: %(what)s deleted"),
    "history": gettext_lazy("Administration: history of %(what)s"),
    "search": gettext_lazy("Administration: search in %(what)s"),
}
_ADMIN_MODELS: dict[str, Promise] = {
    "patient": gettext_lazy("patients"),
    "document": gettext_lazy("documents"),
    "carerelationship": gettext_lazy("patient care"),
    "emergencyaccess": gettext_lazy("emergency accesses"),
    "user": gettext_lazy("users"),
}

ROLE_LABELS: dict[str, Promise] = {
    "doctor": gettext_lazy("Doctor"),
    "admin": gettext_lazy("Administrator (IT)"),
    "auditor": gettext_lazy("Auditor (data protection officer)"),
    "system": gettext_lazy("System"),
}


def action_label(action: str) -> str:
    label = ACTION_LABELS.get(action)
    if label is not None:
        return str(label)
    parts = action.split(".")
    if len(parts) >= 3 and parts[0] == "admin" and parts[-1] in _ADMIN_STEPS:
        what = _ADMIN_MODELS.get(parts[-2])
        if what is not None:
            return str(_ADMIN_STEPS[parts[-1]]) % {"what": what}
    return _("Other event (%(tag)s)") % {"tag": action}


def role_label(role: str) -> str:
    if not role:
        return ""
    label = ROLE_LABELS.get(role)
    return str(label) if label is not None else role


# Reasons recorded as codes (access decisions, refusals, emergency reasons); any other
# reason is free text (a justification, an error message) and is shown as written.
REASON_LABELS: dict[str, Promise] = {
    "care_relationship": gettext_lazy("Patient in the doctor's care"),
    "emergency_access": gettext_lazy("Emergency access"),
    "no_relationship": gettext_lazy("Patient not in the doctor's care"),
    "role_not_doctor": gettext_lazy("Not a doctor's account"),
    "inactive_user": gettext_lazy("Account disabled"),
    "anonymous": gettext_lazy("Not logged in"),
    "no_target": gettext_lazy("No such patient or document"),
    "document_of_another_patient": gettext_lazy("Document of another patient"),
    "unknown_action": gettext_lazy("Unknown action"),
    "unknown_or_malformed_id": gettext_lazy("Unknown or malformed identifier"),
    "second_factor_refused": gettext_lazy("Second-factor code refused"),
    "bad_credentials": gettext_lazy("Wrong identifier or password"),
    "bad_invitation": gettext_lazy("Invalid invitation"),
    "wrong_current_password": gettext_lazy("Wrong current password"),
    "weak_password": gettext_lazy("Password too weak"),
    "too_many_failures": gettext_lazy("Too many failures"),
    "found": gettext_lazy("Patient found"),
    "not_found": gettext_lazy("No patient found"),
    "idle": gettext_lazy("Inactivity"),
    "absolute": gettext_lazy("Maximum session length reached"),
    "unknown": gettext_lazy("Unknown"),
    "expired": gettext_lazy("Expired"),
    "enrolment": gettext_lazy("Enrolment"),
    "decoy": gettext_lazy("Decoy record"),
    "missing": gettext_lazy("No API key sent"),
    "malformed": gettext_lazy("Malformed API key"),
    "revoked": gettext_lazy("Revoked API key"),
    "throttled": gettext_lazy("Too many requests"),
    "vital_emergency": gettext_lazy("Vital emergency"),
    "patient_unconscious": gettext_lazy("Patient unconscious"),
    "continuity_of_care": gettext_lazy("Continuity of care"),
    "other": gettext_lazy("Other"),
}


def reason_label(reason: str) -> str:
    label = REASON_LABELS.get(reason)
    return str(label) if label is not None else reason


def emergency_reason(extra: object) -> str:
    """The emergency reason chosen from the list, for an emergency.grant event ("" otherwise)."""
    code = extra.get("emergency_reason") if isinstance(extra, dict) else None
    return reason_label(code) if isinstance(code, str) and code else ""
