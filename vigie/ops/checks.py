"""`vigie check`: is this installation what the design says it is, right now?

Django's `check --deploy` looks at settings. This looks at the installation: the keys on disk
(present, private, owned by us, away from the blobs and the web root), the database (reachable,
migrated, PostgreSQL in production), TLS, the exposure guard (alive, its firewall table, its
policy, the listening sockets), the backups and the audit checkpoints.

Each check is a small function of a `Context` that returns a `Finding` (or a few): ok,
warning or failure, with the fix spelled out for whoever reads it (often a clinic's IT
technician). A check never raises: a missing keyring or an unreachable database is what it
reports, and a check that crashes anyway is reported as a failure of that check.

The checks of the settings, keys and TLS are here with the list of all (`CHECKS`) and
`run_all`; the database's are in `checks_storage.py`, the guard's, intake's, backups' and
audit's in `checks_services.py`, what they share in `check_base.py`.
"""

from __future__ import annotations

import ipaddress
import os
import pwd
import stat
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path

from django.conf import settings

from vigie.ops.check_base import FAILURE, OK, WARNING, Check, Context, Finding, Status
from vigie.ops.checks_nodes import (
    check_blob_store,
    check_database_replication,
    check_guard_hosts,
    check_singletons,
)
from vigie.ops.checks_psc import check_psc_discovery, check_psc_secret
from vigie.ops.checks_services import (
    check_audit_checkpoint,
    check_audit_watch,
    check_backup,
    check_backup_verified,
    check_guard_heartbeat,
    check_listeners,
    check_lockdown,
    check_mllp,
    check_nftables,
    check_policy,
)
from vigie.ops.checks_storage import (
    check_data_permissions,
    check_database_engine,
    check_database_reachable,
    check_migrations,
    check_sqlite_library,
)

# A TLS certificate that expires this soon needs renewing now.
CERT_RENEW_BEFORE = timedelta(days=14)
_MIN_SECRET_KEY_LENGTH = 50
_LOOPBACK_HOSTS = {"localhost", "127.0.0.1", "[::1]", "::1"}


def _user(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"


def _private_file_problem(path: Path, what: str) -> tuple[str, str] | None:
    """(message, fix) when `path` is not a private regular file of this user; None if it is."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return f"{what} {path} does not exist", ""
    except OSError as exc:
        return (
            f"{what} {path} cannot be read ({exc.strerror})",
            f"check the path and owner of {path}",
        )
    if not stat.S_ISREG(st.st_mode):
        return f"{what} {path} is not a regular file", f"replace {path} with the real file"
    mode = stat.S_IMODE(st.st_mode)
    if mode & 0o077:
        access = "readable" if mode & 0o044 else "writable"
        return (
            f"{what} {path} is {access} by group/others (mode {mode:04o})",
            f"chmod 600 {path}",
        )
    euid = os.geteuid()
    if st.st_uid != euid:
        return (
            f"{what} {path} belongs to {_user(st.st_uid)}, not to {_user(euid)} who runs vigie",
            f"chown {_user(euid)} {path} (and run `vigie check` as the user that runs Vigie)",
        )
    return None


def _private_dir_problem(path: Path, what: str) -> tuple[str, str] | None:
    try:
        st = path.stat()
    except OSError as exc:
        return f"{what} {path} cannot be read ({exc.strerror})", f"check the path of {path}"
    mode = stat.S_IMODE(st.st_mode)
    if mode & 0o077:
        return (
            f"{what} {path} is open to group/others (mode {mode:04o})",
            f"chmod 700 {path}",
        )
    euid = os.geteuid()
    if st.st_uid != euid:
        return (
            f"{what} {path} belongs to {_user(st.st_uid)}, not to {_user(euid)} who runs vigie",
            f"chown {_user(euid)} {path}",
        )
    return None


# --- mode and settings ---------------------------------------------------------------------


def check_mode(ctx: Context) -> Finding:
    mode = settings.VIGIE_MODE
    if mode == "production":
        return Finding("mode", OK, "production mode")
    return Finding(
        "mode",
        FAILURE,
        f"VIGIE_MODE={mode}: this is not production mode"
        + (" (a synthetic demo clinic)" if mode == "demo" else ""),
        "unset VIGIE_MODE (production is the default) in the service's environment",
    )


def check_debug(ctx: Context) -> Finding:
    if not settings.DEBUG:
        return Finding("debug", OK, "DEBUG is off")
    return Finding(
        "debug",
        FAILURE,
        "DEBUG is on: error pages show settings, paths and queries to whoever triggers them",
        "unset VIGIE_DEBUG (or set VIGIE_DEBUG=false) and restart Vigie",
    )


def check_allowed_hosts(ctx: Context) -> Finding:
    hosts = list(settings.ALLOWED_HOSTS)
    fix = "set VIGIE_ALLOWED_HOSTS to the portal's name(s), e.g. VIGIE_ALLOWED_HOSTS=portail.clinique.example"
    if not hosts:
        return Finding(
            "allowed_hosts", FAILURE, "ALLOWED_HOSTS is empty: no request is served", fix
        )
    if "*" in hosts or any(h.startswith(".") and len(h) <= 1 for h in hosts):
        return Finding(
            "allowed_hosts",
            FAILURE,
            "ALLOWED_HOSTS accepts any host name ('*'): forged Host headers reach the portal",
            fix,
        )
    if all(h in _LOOPBACK_HOSTS for h in hosts):
        return Finding(
            "allowed_hosts",
            WARNING,
            f"ALLOWED_HOSTS names only this machine ({', '.join(hosts)}), the default",
            fix,
        )
    return Finding("allowed_hosts", OK, f"allowed hosts: {', '.join(hosts)}")


def check_csrf_origins(ctx: Context) -> Finding:
    origins = list(settings.CSRF_TRUSTED_ORIGINS)
    fix = "set VIGIE_CSRF_TRUSTED_ORIGINS to the portal's address, e.g. https://portail.clinique.example"
    if not origins:
        return Finding(
            "csrf_origins",
            WARNING,
            "CSRF_TRUSTED_ORIGINS is empty: forms work only when the browser's address is "
            "exactly the Host Vigie sees (not always true behind a proxy)",
            fix,
        )
    plain = [o for o in origins if not o.startswith("https://")]
    if plain:
        return Finding(
            "csrf_origins",
            WARNING,
            f"CSRF trusted origin(s) without https: {', '.join(plain)}",
            "list only https:// origins in VIGIE_CSRF_TRUSTED_ORIGINS",
        )
    return Finding("csrf_origins", OK, f"CSRF trusted origins: {', '.join(origins)}")


# --- keys ----------------------------------------------------------------------------------


def check_secret_key(ctx: Context) -> Finding:
    if not settings.VIGIE_SECRET_KEY_CONFIGURED:
        return Finding(
            "secret_key",
            FAILURE,
            "no secret key: sessions and CSRF tokens cannot be signed",
            "run `vigie keys init` (creates "
            f"{settings.VIGIE_SECRET_KEY_DEFAULT_FILE}), or set VIGIE_SECRET_KEY_FILE",
        )
    length = len(settings.SECRET_KEY)
    if length < _MIN_SECRET_KEY_LENGTH:
        return Finding(
            "secret_key",
            FAILURE if settings.PRODUCTION else WARNING,
            f"the secret key is too short ({length} characters, need {_MIN_SECRET_KEY_LENGTH})",
            "replace it with `python -c 'import secrets; print(secrets.token_urlsafe(64))'`",
        )
    if settings.VIGIE_SECRET_KEY_FILE is not None:
        path = Path(settings.VIGIE_SECRET_KEY_FILE)
    elif settings.VIGIE_SECRET_KEY_IN_ENVIRONMENT:
        return Finding(
            "secret_key",
            WARNING,
            "the secret key is given in the environment (VIGIE_SECRET_KEY), where child "
            "processes and crash reports can see it",
            "put it in a file readable only by Vigie and set VIGIE_SECRET_KEY_FILE instead",
        )
    else:
        path = Path(settings.VIGIE_SECRET_KEY_DEFAULT_FILE)
    problem = _private_file_problem(path, "the secret key file")
    if problem is not None:
        return Finding("secret_key", FAILURE, problem[0], problem[1] or "run `vigie keys init`")
    return Finding("secret_key", OK, f"secret key in {path} (private)")


def check_keyring(ctx: Context) -> Finding:
    from vigie.vault.errors import KeyringError
    from vigie.vault.kek_store import Keyring

    path = Path(settings.VIGIE_KEYRING_FILE)
    problem = _private_file_problem(path, "the keyring")
    if problem is None:
        problem = _private_dir_problem(path.parent, "the keyring folder")
    if problem is not None:
        fix = problem[1] or (
            "run `vigie keys init` on a new installation; on an existing one, restore the "
            "keyring from your `vigie keys export` file (without it the documents are lost)"
        )
        return Finding("keyring", FAILURE, problem[0], fix)
    try:
        keyring = Keyring.load(path)
    except KeyringError as exc:
        return Finding(
            "keyring",
            FAILURE,
            str(exc),
            "restore the keyring from your `vigie keys export` file",
        )
    return Finding("keyring", OK, f"keyring {path} (private, {len(keyring.key_ids)} key(s))")


def check_keyring_location(ctx: Context) -> Finding:
    """Which of the two key sources is in use, and that no key lies in the data tree."""
    from vigie.vault import layout

    source = settings.VIGIE_KEYS_SOURCE
    where = f"{source} {settings.VIGIE_KEYS_DIR}"
    misplaced = layout.misplaced_keys()
    if misplaced:
        first = misplaced[0]
        more = f" (and {len(misplaced) - 1} more)" if len(misplaced) > 1 else ""
        return Finding(
            "keyring.location",
            FAILURE,
            f"keys from the {where}, but key material {first}{more}: whoever copies or "
            "serves that folder gets the keys with the documents",
            "stop Vigie and run `vigie keys move /etc/vigie/keys` (copies, verifies, then "
            "removes), then set VIGIE_KEYS_DIR=/etc/vigie/keys",
        )
    return Finding(
        "keyring.location",
        OK,
        f"keys from the {where}, apart from VIGIE_HOME, the blobs and the web root",
    )


def check_signing_key(ctx: Context) -> Finding:
    from vigie.audit.checkpoints import signing_key_path

    path = signing_key_path()
    problem = _private_file_problem(path, "the audit signing key")
    if problem is not None:
        return Finding(
            "audit.signing_key", FAILURE, problem[0], problem[1] or "run `vigie keys init`"
        )
    return Finding("audit.signing_key", OK, f"audit signing key {path} (private)")


# --- TLS -----------------------------------------------------------------------------------


def _certificate_finding(cert_path: Path, key_path: Path, now: datetime) -> Finding:
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    fix_files = "give VIGIE_TLS_CERT (PEM certificate chain) and VIGIE_TLS_KEY (PEM private key) readable files"
    try:
        cert_data = cert_path.read_bytes()
        key_data = key_path.read_bytes()
    except OSError as exc:
        return Finding(
            "tls",
            FAILURE,
            f"cannot read the TLS file {exc.filename} ({exc.strerror})",
            fix_files,
        )
    try:
        cert = x509.load_pem_x509_certificates(cert_data)[0]
    except ValueError:
        return Finding("tls", FAILURE, f"{cert_path} is not a PEM certificate", fix_files)
    try:
        key = serialization.load_pem_private_key(key_data, password=None)
    except (ValueError, TypeError):
        return Finding(
            "tls",
            FAILURE,
            f"{key_path} is not an unencrypted PEM private key",
            fix_files,
        )
    raw = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    if key.public_key().public_bytes(*raw) != cert.public_key().public_bytes(*raw):
        return Finding(
            "tls",
            FAILURE,
            f"the TLS key {key_path} does not belong to the certificate {cert_path}",
            "give the key that was used to request this certificate",
        )
    subject = cert.subject.rfc4514_string() or "(no subject)"
    expires = cert.not_valid_after_utc
    if expires <= now:
        return Finding(
            "tls",
            FAILURE,
            f"the TLS certificate {cert_path} ({subject}) expired on {expires:%Y-%m-%d}",
            "renew the certificate, then restart `vigie serve`",
        )
    if cert.not_valid_before_utc > now:
        return Finding(
            "tls",
            FAILURE,
            f"the TLS certificate {cert_path} is not valid before {cert.not_valid_before_utc:%Y-%m-%d}",
            "check the machine's clock and the certificate",
        )
    if expires - now < CERT_RENEW_BEFORE:
        return Finding(
            "tls",
            WARNING,
            f"the TLS certificate {cert_path} ({subject}) expires on {expires:%Y-%m-%d}",
            "renew it now, then restart `vigie serve`",
        )
    if stat.S_IMODE(key_path.stat().st_mode) & 0o004:
        return Finding(
            "tls",
            WARNING,
            f"the TLS private key {key_path} is readable by every user of this machine",
            f"chmod o-rwx {key_path}",
        )
    return Finding("tls", OK, f"TLS served by Vigie: {subject}, valid until {expires:%Y-%m-%d}")


def check_tls(ctx: Context) -> Finding:
    from vigie.lib.proxy import parse_networks

    if not settings.SESSION_COOKIE_SECURE:
        return Finding(
            "tls",
            FAILURE,
            "VIGIE_TLS is off: session cookies would travel over plain HTTP",
            "unset VIGIE_TLS (production assumes TLS) and serve over HTTPS",
        )
    cert = settings.VIGIE_TLS_CERT
    key = settings.VIGIE_TLS_KEY
    if cert or key:
        if not (cert and key):
            return Finding(
                "tls",
                FAILURE,
                "only one of VIGIE_TLS_CERT and VIGIE_TLS_KEY is set",
                "set both: the certificate chain and its private key (PEM files)",
            )
        return _certificate_finding(Path(cert), Path(key), ctx.now)
    proxies = ctx.behind_proxy or list(settings.VIGIE_TRUSTED_PROXIES)
    if proxies:
        try:
            parse_networks(proxies)
        except ValueError as exc:
            return Finding(
                "tls",
                FAILURE,
                f"the trusted proxies are not addresses or networks: {exc}",
                "give addresses like 127.0.0.1 or 10.0.0.0/24 (VIGIE_TRUSTED_PROXIES)",
            )
        return Finding(
            "tls",
            OK,
            f"behind a reverse proxy that terminates TLS (trusted: {', '.join(proxies)})",
        )
    return Finding(
        "tls",
        FAILURE,
        "no TLS and no proxy: neither a certificate (VIGIE_TLS_CERT/VIGIE_TLS_KEY) nor a "
        "trusted reverse proxy (VIGIE_TRUSTED_PROXIES) is configured, so passwords and "
        "documents may cross the network in clear",
        "either set VIGIE_TLS_CERT and VIGIE_TLS_KEY (the files `vigie serve` uses), or, "
        "behind a reverse proxy that terminates TLS, set VIGIE_TRUSTED_PROXIES=ADDR "
        "(as `vigie serve --behind-proxy ADDR`) or run `vigie check --behind-proxy ADDR`",
    )


# --- Django's own checks -------------------------------------------------------------------


def check_django(ctx: Context) -> list[Finding]:
    from django.core import checks

    findings: list[Finding] = []
    for message in checks.run_checks(include_deployment_checks=True):
        if message.level < checks.WARNING:
            continue
        status: Status = FAILURE if message.is_serious() else WARNING
        text = str(message.msg)
        if message.obj is not None:
            text = f"{message.obj}: {text}"
        findings.append(Finding(f"django.{message.id}", status, text, str(message.hint or "")))
    if not findings:
        findings.append(Finding("django", OK, "Django's system checks (--deploy): no issues"))
    return findings


# --- running them --------------------------------------------------------------------------

# In order: later checks read what earlier ones put in the context (database, policy).
CHECKS: tuple[tuple[str, Check], ...] = (
    ("mode", check_mode),
    ("debug", check_debug),
    ("allowed_hosts", check_allowed_hosts),
    ("csrf_origins", check_csrf_origins),
    ("tls", check_tls),
    ("secret_key", check_secret_key),
    ("keyring", check_keyring),
    ("keyring.location", check_keyring_location),
    ("audit.signing_key", check_signing_key),
    ("django", check_django),
    ("database", check_database_reachable),
    ("database.migrations", check_migrations),
    ("database.engine", check_database_engine),
    ("database.sqlite_library", check_sqlite_library),
    ("database.replication", check_database_replication),
    ("store", check_blob_store),
    ("data.permissions", check_data_permissions),
    ("guard.heartbeat", check_guard_heartbeat),
    ("guard.hosts", check_guard_hosts),
    ("guard.lockdown", check_lockdown),
    ("guard.policy", check_policy),
    ("guard.nftables", check_nftables),
    ("guard.listeners", check_listeners),
    ("intake.mllp", check_mllp),
    ("backup", check_backup),
    ("backup.verified", check_backup_verified),
    ("audit.checkpoint", check_audit_checkpoint),
    ("audit.watch", check_audit_watch),
    ("nodes.singletons", check_singletons),
    ("psc", check_psc_secret),
    ("psc.discovery", check_psc_discovery),
)


def run_all(
    ctx: Context | None = None, checks: Sequence[tuple[str, Check]] = CHECKS
) -> list[Finding]:
    """Every check, in order; a check that crashes is a failure of that check, not of all."""
    ctx = ctx or Context()
    findings: list[Finding] = []
    for check_id, check in checks:
        try:
            result = check(ctx)
        except Exception as exc:  # a self-check must report, never die half-way
            first_line = (str(exc).strip().splitlines() or [""])[0]
            result = Finding(
                check_id,
                FAILURE,
                f"the check itself failed: {type(exc).__name__}: {first_line}",
                "fix what it names; if unclear, report it with the output of `vigie check`",
            )
        findings.extend(result if isinstance(result, list) else [result])
    return findings


def valid_proxies(values: list[str]) -> list[str]:
    """`--behind-proxy` values, split and stripped; raises ValueError on a bad address."""
    proxies = [v.strip() for value in values for v in value.split(",") if v.strip()]
    for proxy in proxies:
        ipaddress.ip_network(proxy, strict=False)
    return proxies
