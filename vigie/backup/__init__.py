"""Backups that a clinic can restore, prove and practise.

A backup destination holds snapshots that share one store of encrypted blobs::

    DEST/blobs/ab/ab….blob              ciphertext, copied once, shared by snapshots
    DEST/snapshots/<id>/manifest.json    signed: what the snapshot holds, with hashes
    DEST/snapshots/<id>/database.*       SQLite online backup, or pg_dump custom format
    DEST/snapshots/<id>/checkpoints.jsonl the signed audit checkpoints up to the snapshot

The keys never go into DEST: `vigie keys export` writes them apart, under a passphrase.
"""
