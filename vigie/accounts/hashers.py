"""Password hashing: Argon2id with OWASP's recommended minimum cost, stated here explicitly."""

from __future__ import annotations

from django.contrib.auth.hashers import Argon2PasswordHasher


class VigieArgon2PasswordHasher(Argon2PasswordHasher):
    # OWASP Password Storage Cheat Sheet: Argon2id, m=19 MiB, t=2, p=1. Django's own
    # defaults (m=100 MiB, t=2, p=8) are stronger per hash but make a burst of logins on a
    # small server exhaust memory; these values keep login fast without going below OWASP.
    # Changing them later is safe: must_update() rehashes at the next successful login.
    algorithm = "argon2"
    memory_cost = 19456  # KiB
    time_cost = 2
    parallelism = 1
