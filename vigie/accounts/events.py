"""Audit events of the accounts app, written through the audit log's single entry point."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest

LOGIN_SUCCESS = "login.success"
LOGIN_FAILURE = "login.failure"
LOGIN_LOCKED = "login.locked"
LOGIN_DELAYED = "login.delayed"
LOGIN_SUSTAINED = "login.sustained_failures"
LOCKOUT_RESET = "login.lockout_reset"
MFA_SUCCESS = "mfa.success"
MFA_FAILURE = "mfa.failure"
MFA_ENROLLED = "mfa.enrolled"
MFA_RECOVERY_CODE_USED = "mfa.recovery_code_used"
LOGOUT = "logout"
SESSION_EXPIRED = "session.expired"


def audit(
    action: str,
    *,
    request: HttpRequest | None = None,
    actor: Any = None,
    outcome: str = "success",
    reason: str = "",
    extra: dict[str, Any] | None = None,
) -> None:
    # Imported here so the audit app's models load after the app registry; a failure to
    # write propagates on purpose: an unrecorded login must not quietly succeed.
    from vigie.audit.log import record

    record(action, request=request, actor=actor, outcome=outcome, reason=reason, extra=extra)
