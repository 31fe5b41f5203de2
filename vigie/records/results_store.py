"""Sealing a document's lab results, and opening them — for the portal's one door only.

`seal_results` runs at intake, before the document row's transaction (the encryption), and
`SealedResults` is inserted inside it. `open_results` / `open_attachment` decrypt: like
`records.content.stream_verified`, only `portal/door.py` may call them, after the access
decision and the audit event (`test_one_door` enforces it).
"""

from __future__ import annotations

from collections.abc import Iterable

from vigie import vault
from vigie.records.ingest_errors import InvalidDocument
from vigie.records.models import SealedResults, StoredDocument, results_label
from vigie.records.results import ResultSet, ResultsFormatError

__all__ = ["documents_with_results", "open_attachment", "open_results", "seal_results"]


def seal_results(document_id: str, results: ResultSet, attachment: bytes | None) -> SealedResults:
    """The unsaved row holding `results` (and the embedded document) sealed for
    `document_id`. InvalidDocument when the attachment and its description disagree."""
    described = results.attachment
    if (described is None) != (attachment is None):
        raise InvalidDocument("the results describe an attachment that was not given, or not")
    if described is not None and attachment is not None and not described.matches(attachment):
        raise InvalidDocument("the attachment is not the one the results describe")
    label = results_label(document_id)
    parts = [results.to_json()]
    if attachment is not None:
        parts.append(attachment)
    kek_id, wrapped, sealed = vault.seal_record(label, parts)
    return SealedResults(
        id=label,
        kek_id=kek_id,
        wrapped_key=wrapped,
        results=sealed[0],
        attachment=sealed[1] if attachment is not None else None,
    )


def documents_with_results(document_ids: Iterable[str]) -> set[str]:
    """Which of these documents carry results (ids only: nothing is decrypted)."""
    labels = [results_label(pk) for pk in document_ids]
    found = SealedResults.objects.filter(pk__in=labels).values_list("pk", flat=True)
    return {label.split("/", 1)[1] for label in found}


def _row(document: StoredDocument) -> SealedResults | None:
    return SealedResults.objects.filter(pk=results_label(document.pk)).first()


def open_results(document: StoredDocument) -> ResultSet | None:
    """The document's results, decrypted and checked; None when it has none.

    Raises vault.VaultError if the ciphertext does not authenticate, ResultsFormatError if
    what it holds is not a result set (both mean damage: the caller alerts)."""
    row = _row(document)
    if row is None:
        return None
    plain = vault.open_record(row.id, row.kek_id, bytes(row.wrapped_key), bytes(row.results), 0)
    return ResultSet.from_json(plain)


def open_attachment(document: StoredDocument) -> tuple[str, bytes] | None:
    """(content type, bytes) of the sender's embedded document, checked against what the
    results say of it; None when there is none."""
    row = _row(document)
    if row is None or row.attachment is None:
        return None
    results = ResultSet.from_json(
        vault.open_record(row.id, row.kek_id, bytes(row.wrapped_key), bytes(row.results), 0)
    )
    data = vault.open_record(row.id, row.kek_id, bytes(row.wrapped_key), bytes(row.attachment), 1)
    if results.attachment is None or not results.attachment.matches(data):
        raise ResultsFormatError(f"document {document.pk}: the attachment does not match")
    return results.attachment.content_type, data
