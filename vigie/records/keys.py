"""Key rotation: re-wrap every data key under a new key-encryption key, content untouched.

Rotation must never make a document unreadable, even for a process reading concurrently:
1. the new key is added to the keyring file (durably) before any row points to it, and
   readers that meet an unknown key id reload the keyring;
2. each row is switched with a conditional UPDATE (only if it still holds the wrapped key we
   read), so a concurrent rotation or restore is never overwritten with stale data;
3. old keys stay in the keyring until `remove_key`, which refuses while any row uses them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from django.db.models import Count

from vigie import vault
from vigie.accounts.models import TotpSeed
from vigie.records.models import Document, PendingDocument
from vigie.vault.kek_store import Keyring

Progress = Callable[[int, int], None]
_BATCH = 500
# Every table that holds wrapped data keys: documents, those still to be reconciled, and
# the sealed authenticator seeds (same envelope, their id is the vault label).
_WRAPPED: tuple[type[Document] | type[PendingDocument] | type[TotpSeed], ...] = (
    Document,
    PendingDocument,
    TotpSeed,
)


@dataclass(frozen=True)
class RotationResult:
    new_kek_id: str
    rewrapped: int


def key_usage() -> dict[str, int]:
    """How many data keys each key-encryption key wraps."""
    usage: dict[str, int] = {}
    for model in _WRAPPED:
        rows = model.objects.values("kek_id").annotate(n=Count("id")).order_by("kek_id")
        for row in rows:
            usage[row["kek_id"]] = usage.get(row["kek_id"], 0) + row["n"]
    return dict(sorted(usage.items()))


def rewrap_all(keyring: Keyring | None = None, progress: Progress | None = None) -> int:
    """Re-wrap every data key not yet under the active key. Safe to re-run after a crash."""
    ring = keyring or vault.get_keyring()
    total = sum(m.objects.exclude(kek_id=ring.active_id).count() for m in _WRAPPED)
    done = 0
    # Loop until nothing is left: documents ingested by a process that had not yet seen the
    # new key are picked up by the next pass. The active key is read again on every pass (the
    # keyring notices when another process rotated), so a concurrent rotation cannot leave
    # this loop chasing a key that is no longer active.
    for model in _WRAPPED:
        while True:
            stale = model.objects.exclude(kek_id=ring.active_id)
            batch = list(stale.order_by("pk").values_list("pk", "kek_id", "wrapped_key")[:_BATCH])
            if not batch:
                break
            for pk, kek_id, wrapped in batch:
                new_kek, new_wrapped = vault.rewrap(pk, kek_id, bytes(wrapped), keyring=ring)
                model.objects.filter(pk=pk, kek_id=kek_id, wrapped_key=wrapped).update(
                    kek_id=new_kek, wrapped_key=new_wrapped
                )
                done += 1
                if progress is not None:
                    progress(done, max(total, done))
    return done


def rotate(keyring: Keyring | None = None, progress: Progress | None = None) -> RotationResult:
    ring = keyring or vault.get_keyring()
    new_id = ring.add_key()
    return RotationResult(new_kek_id=new_id, rewrapped=rewrap_all(ring, progress))


class KeyInUse(vault.KeyringError):
    pass


def remove_key(kek_id: str, keyring: Keyring | None = None) -> None:
    ring = keyring or vault.get_keyring()
    in_use = sum(m.objects.filter(kek_id=kek_id).count() for m in _WRAPPED)
    if in_use:
        raise KeyInUse(
            f"key {kek_id} still wraps {in_use} data key(s); run `vigie keys rewrap` first"
        )
    ring.remove_key(kek_id)
