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
# The signed-in user's own credentials (credentials.py): success and refusals alike.
PASSWORD_CHANGED = "password.changed"  # noqa: S105 (an audit action name, not a secret)
PASSWORD_CHANGE_REFUSED = "password.change_refused"  # noqa: S105 (an action name)
MFA_RECOVERY_CODES_RENEWED = "mfa.recovery_codes_renewed"


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
