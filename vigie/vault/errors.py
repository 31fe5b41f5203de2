"""What can go wrong in the vault, as exceptions callers can tell apart.

Every message is one line a human can act on and names the file or document concerned, so a
CLI can print it as is and a log line says where to look.
"""

from __future__ import annotations


class VaultError(Exception):
    """Base class: anything the vault refuses or cannot do."""


class KeyringError(VaultError):
    """The keyring is missing, unreadable, unsafe (group/world access) or corrupted, or a key
    id is unknown. Configuration or operations must fix it; retrying will not."""


class IntegrityError(VaultError):
    """Authentication failed: the blob or wrapped key was tampered with, truncated,
    reordered, swapped with another document's, or opened with the wrong key."""


class BlobMissing(VaultError):
    """No blob is stored under this id."""


class DocumentTooLarge(VaultError):
    """The plaintext exceeds the size limit given to `seal`."""


class StoreUnavailable(VaultError):
    """The blob store did not answer in time or failed (network, server error, credentials).
    Nothing was written; retrying later may work. The portal answers 503."""
