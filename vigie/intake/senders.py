"""MLLP senders: add (by certificate, or the one loopback engine), find, revoke.

A lab's MLLP client proves who it is with a TLS client certificate signed by the clinic's
client CA. The CA check happens in the handshake (OpenSSL: signature, validity dates, the
CRL when one is given); the fingerprint look-up here decides *which* sender it is, and a
certificate the CA signed but no administrator mapped (or whose mapping was revoked)
speaks for nobody.
"""

from __future__ import annotations

import hashlib
from datetime import UTC
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from django.db import transaction
from django.utils import timezone

from vigie.audit.log import record
from vigie.intake.models import MllpSender


class SenderError(ValueError):
    pass


def fingerprint(der: bytes) -> str:
    """The SHA-256 of a certificate's DER bytes, lowercase hex (`openssl x509 -fingerprint
    -sha256` prints the same digits in uppercase with colons)."""
    return hashlib.sha256(der).hexdigest()


def read_certificate(path: Path) -> x509.Certificate:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise SenderError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        if b"-----BEGIN" in raw:
            return x509.load_pem_x509_certificate(raw)
        return x509.load_der_x509_certificate(raw)
    except ValueError as exc:
        raise SenderError(f"{path} is not an X.509 certificate (PEM or DER): {exc}") from None


def add_sender(
    name: str, *, source_system: str, certificate: x509.Certificate | None, by: str = ""
) -> MllpSender:
    """A new MLLP sender; with `certificate`, the one that certificate authenticates."""
    name, source_system = name.strip(), source_system.strip()
    if not name:
        raise SenderError("give the sender a name (the lab or system it is)")
    if not source_system:
        raise SenderError("give the source system its documents come from (--source)")
    if MllpSender.objects.filter(name=name).exists():
        raise SenderError(f"an MLLP sender named {name!r} already exists")
    digest, subject, not_after = "", "", None
    if certificate is not None:
        digest = fingerprint(certificate.public_bytes(Encoding.DER))
        subject = certificate.subject.rfc4514_string()[:500]
        not_after = certificate.not_valid_after_utc
        if not_after <= timezone.now().astimezone(UTC):
            raise SenderError(f"this certificate expired on {not_after:%Y-%m-%d}")
        taken = MllpSender.objects.filter(fingerprint=digest).first()
        if taken is not None:
            raise SenderError(f"this certificate already belongs to the sender {taken.name!r}")
    with transaction.atomic():
        sender = MllpSender.objects.create(
            name=name,
            source_system=source_system,
            fingerprint=digest,
            subject=subject,
            not_after=not_after,
            created_by=by,
        )
        record(
            "intake.mllp_sender.created",
            extra={
                "sender": name,
                "source_system": source_system,
                "fingerprint": digest,
                "subject": subject,
                "by": by,
            },
        )
    return sender


def revoke_sender(sender: MllpSender, *, by: str = "") -> None:
    """From now on its certificate (or its loopback listener) is refused."""
    with transaction.atomic():
        locked = MllpSender.objects.select_for_update().get(pk=sender.pk)
        if locked.revoked_at is not None:
            return
        locked.revoked_at = timezone.now()
        locked.revoked_by = by
        locked.save(update_fields=["revoked_at", "revoked_by"])
        record(
            "intake.mllp_sender.revoked",
            extra={"sender": locked.name, "fingerprint": locked.fingerprint, "by": by},
        )
    sender.refresh_from_db()


def sender_for_certificate(der: bytes) -> MllpSender | None:
    """The active sender this (CA-verified) client certificate authenticates, or None."""
    return MllpSender.objects.filter(fingerprint=fingerprint(der), revoked_at=None).first()


def loopback_sender(name: str) -> MllpSender | None:
    """The active sender a plain loopback listener speaks for, or None."""
    return MllpSender.objects.filter(name=name, fingerprint="", revoked_at=None).first()
