"""Hook points other apps connect to. Receivers run inside the sender's transaction.

The audit app connects `document_ingested` so the ingest event is written in the same
transaction as the row: either both exist after a crash, or neither does.
"""

from django.dispatch import Signal

# Sent inside the ingest transaction with `document=` the new Document.
document_ingested = Signal()
