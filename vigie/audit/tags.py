"""Audit tags for what happens to records, shared by the apps that record and the audit rules.

They live in audit, the vocabulary of its own trail: the rules that watch for them are here,
and the apps that record them (the portal's door, the guard's decoys) sit above audit.

A rule matches one of these constants, never a string of its own: renaming a tag breaks an
import instead of silently disabling the rule that watches for it (the canary rule once
matched "canary.touched" while the guard recorded "guard.canary.touched"). Decoy records are
records in nobody's scope; the guard records their touch, the audit rules (below the guard in
the layers, so unable to import it) alarm on it, hence the tag lives here.
"""

from __future__ import annotations

DOCUMENT_READ = "document.read"
DOCUMENT_DOWNLOAD = "document.download"
# A doctor said "I have seen it" without opening it (the results inbox's "mark as read").
DOCUMENT_MARKED_READ = "document.marked_read"
# A document counts as opened by a doctor once one of these, with that doctor as actor and
# that document's id, is in the trail: the door's own read events, so that reading needs no
# write of its own (see `audit_actor_document_idx`).
OPENED = (DOCUMENT_READ, DOCUMENT_DOWNLOAD, DOCUMENT_MARKED_READ)
CANARY_TOUCHED = "guard.canary.touched"
# One break-the-glass access granted: what the DPO counts as "an emergency access".
EMERGENCY_GRANT = "emergency.grant"

# Passkeys (accounts/passkeys.py) and the sign-in policy (accounts/signin_policy.py). Here,
# beside the records' tags, so that a rule or report watching for a cloned authenticator or
# a refused sign-in method matches a constant, never a string of its own.
PASSKEY_REGISTERED = "passkey.registered"
PASSKEY_REGISTRATION_REFUSED = "passkey.registration_refused"
PASSKEY_USED = "passkey.used"
PASSKEY_REFUSED = "passkey.refused"
PASSKEY_CLONE_SUSPECTED = "passkey.clone_suspected"
PASSKEY_REVOKED = "passkey.revoked"
SIGNIN_METHOD_REFUSED = "login.method_refused"

# `extra["via"]` of the reads one page makes at once (a patient's lab history reads every
# report it draws from): one page, one request, many events; the crawler rule counts the page.
VIA_RESULTS_HISTORY = "results.history"
