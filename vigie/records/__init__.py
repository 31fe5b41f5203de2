"""Patients, their documents and who may see them.

Documents are sealed into the vault and decrypted out of it here only: `receive()` and
`ingest()` seal them, `content` decrypts them (for the portal's one door after
`access.decide()`, and for the checks: fsck, backup verify). Other apps use the vault for
their own secrets and files, never for a document's content.
"""
