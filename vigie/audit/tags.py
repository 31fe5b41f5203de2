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
CANARY_TOUCHED = "guard.canary.touched"
# `extra["via"]` of the reads one page makes at once (a patient's lab history reads every
# report it draws from): one page, one request, many events; the crawler rule counts the page.
VIA_RESULTS_HISTORY = "results.history"
