"""Why a received document was not stored; each message tells the sender what to fix."""

from __future__ import annotations


class IngestError(Exception):
    """The document was not stored; the message tells the sender what to fix."""


class UnknownPatient(IngestError):
    pass


class InvalidDocument(IngestError):
    pass


class ForeignSource(InvalidDocument):
    """The payload names another sender's source system (an IPP "assigned by LABO-B" sent
    with LABO-A's credentials): a sender speaks only for its own, so nothing is stored and
    nothing is learnt."""


class StorageUnavailable(IngestError):
    """The disk refused the write (full, read-only, failing): try again later, nothing kept."""
