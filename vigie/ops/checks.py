"""`vigie check`: is this installation what the design says it is, right now?

Django's `check --deploy` looks at settings. This looks at the installation: the keys on disk
(present, private, owned by us, away from the blobs and the web root), the database (reachable,
migrated, PostgreSQL in production), TLS, the exposure guard (alive, its firewall table, its
policy, the listening sockets), the backups and the audit checkpoints.

Each check is a small function of a `Context` that returns a `Finding` (or a few): ok,
warning or failure, with the fix spelled out for whoever reads it (often a clinic's IT
technician). A check never raises: a missing keyring or an unreachable database is what it
reports, and a check that crashes anyway is reported as a failure of that check.
"""

from __future__ import annotations

import ipaddress
import os
import pwd
import stat
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from django.conf import settings
from django.utils import timezone

from vigie.lib import env

Status = Literal["ok", "warning", "failure"]
OK: Status = "ok"
WARNING: Status = "warning"
FAILURE: Status = "failure"

# A daily backup may run a little late; beyond this it did not run.
BACKUP_MAX_AGE = timedelta(hours=26)
VERIFY_MAX_AGE = timedelta(days=8)
# A TLS certificate that expires this soon needs renewing now.
CERT_RENEW_BEFORE = timedelta(days=14)
_MIN_SECRET_KEY_LENGTH = 50
_LOOPBACK_HOSTS = {"localhost", "127.0.0.1", "[::1]", "::1"}
_MAX_LISTED = 5


@dataclass(frozen=True)
class Finding:
    id: str
    status: Status
    message: str
    fix: str = ""

    def as_dict(self) -> dict[str, str]:
        return {"id": self.id, "status": self.status, "message": self.message, "fix": self.fix}


@dataclass
class Context:
    """What the checks share: one `now`, the command's options, and what earlier checks found."""

    now: datetime = field(default_factory=timezone.now)
    # `vigie check --behind-proxy ADDR,...`: the proxies `vigie serve --behind-proxy` was given.
    behind_proxy: list[str] = field(default_factory=list)
    # Set by the database checks; the checks that read tables need both.
    database_reachable: bool = False
    database_migrated: bool = False
    policy: Any = None  # vigie.guard.policy.Policy once the policy check loaded it


Check = Callable[[Context], "Finding | list[Finding]"]


# --- helpers -------------------------------------------------------------------------------


def _ago(seconds: float) -> str:
    seconds = max(int(seconds), 0)
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 2 * 3600:
        return f"{seconds // 60} min"
    if seconds < 2 * 86400:
        return f"{seconds // 3600} h"
    return f"{seconds // 86400} days"


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


def _inside(path: Path, folder: Path) -> bool:
    return path.resolve().is_relative_to(folder.resolve())


def _needs_database(ctx: Context, check_id: str) -> Finding | None:
    if ctx.database_reachable and ctx.database_migrated:
        return None
    why = "unreachable" if not ctx.database_reachable else "not migrated"
    return Finding(check_id, WARNING, f"not checked: the database is {why} (see above)")


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
    file_name = os.environ.get("VIGIE_SECRET_KEY_FILE")
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
    if file_name:
        path = Path(file_name)
    elif os.environ.get("VIGIE_SECRET_KEY"):
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
    cert = env.string("VIGIE_TLS_CERT")
    key = env.string("VIGIE_TLS_KEY")
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


# --- database ------------------------------------------------------------------------------


def check_database_reachable(ctx: Context) -> Finding:
    from django.db import connection

    from vigie.startup import redact_url

    where = redact_url(os.environ.get("DATABASE_URL", "") or str(connection.settings_dict["NAME"]))
    name = str(connection.settings_dict["NAME"])
    if (
        connection.vendor == "sqlite"
        and connection.connection is None
        and not name.startswith("file:")
        and name != ":memory:"
        and not Path(name).exists()
    ):
        # Connecting would create an empty database file; say what is missing instead.
        return Finding(
            "database",
            FAILURE,
            f"the database {name} does not exist",
            "run `vigie migrate` (or set DATABASE_URL to the PostgreSQL database)",
        )
    try:
        connection.ensure_connection()
    except Exception as exc:  # every driver has its own error types; all mean "unreachable"
        first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        return Finding(
            "database",
            FAILURE,
            f"cannot reach the database {where}: {first_line}",
            "check DATABASE_URL and that the database server is running and accepts Vigie",
        )
    ctx.database_reachable = True
    return Finding("database", OK, f"database reachable ({connection.vendor})")


def check_migrations(ctx: Context) -> Finding:
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    if not ctx.database_reachable:
        return Finding("database.migrations", WARNING, "not checked: the database is unreachable")
    executor = MigrationExecutor(connection)
    plan = executor.migration_plan(executor.loader.graph.leaf_nodes())
    if plan:
        first = plan[0][0]
        return Finding(
            "database.migrations",
            FAILURE,
            f"the database is not migrated: {len(plan)} migration(s) not applied "
            f"(first: {first.app_label}.{first.name})",
            "run `vigie migrate` (after a backup), then restart Vigie",
        )
    ctx.database_migrated = True
    return Finding("database.migrations", OK, "all migrations applied")


def check_database_engine(ctx: Context) -> Finding:
    from django.db import connection

    if connection.vendor != "sqlite" or not settings.PRODUCTION:
        return Finding("database.engine", OK, f"database engine: {connection.vendor}")
    if settings.VIGIE_ALLOW_SQLITE:
        return Finding(
            "database.engine",
            WARNING,
            "SQLite in production (allowed by VIGIE_ALLOW_SQLITE): fine for one small site, "
            "but PostgreSQL is what production is tested for",
            "move to PostgreSQL (DATABASE_URL=postgres://...) when you can",
        )
    return Finding(
        "database.engine",
        FAILURE,
        "the database is SQLite in production mode",
        "set DATABASE_URL=postgres://... and run `vigie migrate`; or, for a small single-"
        "machine installation, accept SQLite explicitly with VIGIE_ALLOW_SQLITE=1",
    )


def sqlite_database_file() -> Path | None:
    """The SQLite database file this installation uses; None on PostgreSQL or in memory."""
    from django.db import connection

    if connection.vendor != "sqlite":
        return None
    name = str(connection.settings_dict["NAME"])
    if not name or name == ":memory:" or name.startswith("file:"):
        return None
    return Path(name)


def _open_mode(path: Path) -> int | None:
    """The group/other bits of `path`, or None when it does not exist (yet)."""
    try:
        return stat.S_IMODE(path.stat().st_mode) & 0o077
    except FileNotFoundError:
        return None


def check_data_permissions(ctx: Context) -> Finding:
    """VIGIE_HOME, the blob store and a SQLite database are for the Vigie user alone.

    Outside systemd (no UMask=0077), a folder made by hand or a database created before Vigie
    set its own umask is typically 0755/0644: every local account could then read the
    database, and the encrypted blobs whose sizes and dates alone say a lot.
    """
    wanted: list[tuple[Path, str, str]] = [
        (Path(settings.VIGIE_HOME), "VIGIE_HOME", "700"),
        (Path(settings.VIGIE_BLOB_DIR), "the blob store", "700"),
    ]
    database = sqlite_database_file()
    if database is not None:
        wanted.append((database, "the SQLite database", "600"))
        # SQLite's journal files hold recent pages of the database itself.
        for suffix in ("-wal", "-shm", "-journal"):
            wanted.append((Path(f"{database}{suffix}"), "the SQLite journal", "600"))
    problems = []
    fixes = []
    for path, what, fix_mode in wanted:
        bits = _open_mode(path)
        if bits:
            full = stat.S_IMODE(path.stat().st_mode)
            access = "readable" if bits & 0o044 else "open"
            problems.append(f"{what} {path} is {access} by group/others (mode {full:04o})")
            fixes.append(f"chmod {fix_mode} {path}")
    if problems:
        return Finding("data.permissions", FAILURE, "; ".join(problems), " && ".join(fixes))
    return Finding(
        "data.permissions", OK, "VIGIE_HOME, the blob store and the database are private"
    )


# SQLite's WAL-reset bug (sqlite.org/wal.html, March 2026): from 3.7.0 to 3.51.2, when several
# connections write and checkpoint at once, a rare timing can lose a committed write. Fixed in
# 3.51.3 and backported to 3.44.6 and 3.50.7. Vigie's processes (web, intake, guard, backup)
# all write to the one file, so an installation on SQLite should know which library it runs.
WAL_RESET_FIX = (3, 51, 3)
_WAL_RESET_BACKPORTS = ((3, 44, 6), (3, 50, 7))


def sqlite_has_wal_reset_fix(version: tuple[int, int, int]) -> bool:
    if version >= WAL_RESET_FIX:
        return True
    return any(version[:2] == fixed[:2] and version >= fixed for fixed in _WAL_RESET_BACKPORTS)


def _sqlite_version() -> tuple[int, int, int]:
    import sqlite3

    major, minor, patch = sqlite3.sqlite_version_info
    return major, minor, patch


def check_sqlite_library(ctx: Context) -> list[Finding]:
    from django.db import connection

    if connection.vendor != "sqlite":
        return []
    version = _sqlite_version()
    shown = ".".join(map(str, version))
    if sqlite_has_wal_reset_fix(version):
        return [Finding("database.sqlite_library", OK, f"SQLite library {shown}")]
    return [
        Finding(
            "database.sqlite_library",
            WARNING,
            f"the SQLite library is {shown}, older than the fix of SQLite's WAL-reset bug "
            "(3.51.3; backports 3.44.6, 3.50.7): with several Vigie processes writing, a rare "
            "timing can lose a committed write",
            "use PostgreSQL (DATABASE_URL=postgres://...), or run Vigie's Python with a fixed "
            "SQLite; if your distribution backported the fix to this version, ignore this",
        )
    ]


# --- the exposure guard --------------------------------------------------------------------

_START_GUARD = (
    "start the guard: `vigie guard run` as root or with CAP_NET_ADMIN "
    "(e.g. `systemctl start vigie-guard`), then read its log"
)


def check_guard_heartbeat(ctx: Context) -> Finding:
    from vigie.guard.heartbeat import silence_seconds
    from vigie.guard.models import GuardState

    skipped = _needs_database(ctx, "guard.heartbeat")
    if skipped:
        return skipped
    silence = silence_seconds(ctx.now)
    limit = settings.VIGIE_GUARD_SILENCE_SECONDS
    if silence is None:
        return Finding(
            "guard.heartbeat",
            FAILURE,
            "the exposure guard has never reported: nobody watches the perimeter",
            _START_GUARD,
        )
    if silence > limit:
        return Finding(
            "guard.heartbeat",
            FAILURE,
            f"the exposure guard's last heartbeat was {_ago(silence)} ago (limit {limit} s): "
            "it is stopped or stuck, and nobody watches the perimeter",
            _START_GUARD,
        )
    state = GuardState.objects.filter(pk=GuardState.SINGLETON).first()
    where = f" (pid {state.guard_pid} on {state.guard_host})" if state and state.guard_pid else ""
    return Finding(
        "guard.heartbeat", OK, f"the guard is alive{where}, last beat {_ago(silence)} ago"
    )


def check_lockdown(ctx: Context) -> Finding:
    from vigie.guard.models import GuardState

    skipped = _needs_database(ctx, "guard.lockdown")
    if skipped:
        return skipped
    state = GuardState.objects.filter(pk=GuardState.SINGLETON).first()
    if state is None or not state.lockdown:
        return Finding("guard.lockdown", OK, "not in lockdown")
    since = f" since {state.lockdown_since:%Y-%m-%d %H:%M}" if state.lockdown_since else ""
    return Finding(
        "guard.lockdown",
        WARNING,
        f"the portal is in lockdown{since} (no documents served): {state.lockdown_reason}",
        "fix the exposure, then clear the lockdown on the guard page as an administrator",
    )


def check_policy(ctx: Context) -> Finding:
    from vigie.guard.policy import PolicyError, load_policy

    path = Path(settings.VIGIE_POLICY_FILE)
    try:
        ctx.policy = load_policy(path)
    except PolicyError as exc:
        if not path.exists():
            fix = (
                f"copy deploy/vigie-policy.example.toml to {path} (or point VIGIE_POLICY_FILE "
                "at your policy), adapt it, and test it with `vigie guard check-policy`"
            )
        else:
            fix = f"correct {path} and test it with `vigie guard check-policy`"
        return Finding("guard.policy", FAILURE, f"exposure policy: {exc}", fix)
    listeners = len(ctx.policy.listeners)
    return Finding("guard.policy", OK, f"exposure policy {path} is valid ({listeners} listener(s))")


def check_nftables(ctx: Context) -> Finding:
    from vigie.guard import nft

    try:
        present = nft.table_exists()
    except nft.NftUnavailable as exc:
        return Finding(
            "guard.nftables",
            FAILURE,
            f"cannot read the firewall: {exc}",
            "install nftables and run `vigie check` as root (or with CAP_NET_ADMIN)",
        )
    if not present:
        return Finding(
            "guard.nftables",
            FAILURE,
            f"the nftables table `{nft.TABLE}` is missing: the kernel does not guard the "
            "portal's ports",
            f"{_START_GUARD}; it installs the table (see `nft list table {nft.TABLE}`)",
        )
    return Finding("guard.nftables", OK, f"nftables table `{nft.TABLE}` present")


def check_listeners(ctx: Context) -> Finding:
    import psutil

    from vigie.guard import findings, snapshot

    if ctx.policy is None:
        return Finding("guard.listeners", WARNING, "not checked: no valid exposure policy")
    try:
        sockets = snapshot.listening_sockets()
    except (psutil.Error, OSError) as exc:
        return Finding(
            "guard.listeners",
            WARNING,
            f"cannot list the listening sockets ({exc})",
            "run `vigie check` as root to see every process's sockets",
        )
    problems = findings.listener_findings(ctx.policy, sockets)
    if not problems:
        return Finding(
            "guard.listeners", OK, f"{len(sockets)} listening socket(s), all declared in the policy"
        )
    listed = "; ".join(p.summary for p in problems[:_MAX_LISTED])
    more = f" and {len(problems) - _MAX_LISTED} more" if len(problems) > _MAX_LISTED else ""
    serious = any(p.severity == findings.CRITICAL for p in problems)
    return Finding(
        "guard.listeners",
        FAILURE if serious else WARNING,
        f"listening sockets outside the policy: {listed}{more}",
        f"stop the service, bind it to 127.0.0.1, or declare it as a [[listener]] in "
        f"{settings.VIGIE_POLICY_FILE}",
    )


def mllp_arguments(argv: Sequence[str]) -> list[str] | None:
    """The options of a `vigie intake mllp` command line, or None if it is not one."""
    for index in range(len(argv) - 1):
        if argv[index] == "intake" and argv[index + 1] == "mllp":
            return list(argv[index + 2 :])
    return None


@dataclass(frozen=True)
class MllpListener:
    pid: int
    arguments: list[str]
    # (address, port) of each socket it listens on.
    addresses: list[tuple[str, int]]


def mllp_listeners() -> list[MllpListener]:
    """Each running `vigie intake mllp` process with its options and listening sockets
    (a process of another user is seen only when `vigie check` runs as root)."""
    import psutil

    found: list[MllpListener] = []
    for process in psutil.process_iter(["pid", "cmdline"]):
        arguments = mllp_arguments(process.info.get("cmdline") or [])
        if arguments is None:
            continue
        try:
            sockets = process.net_connections(kind="inet")
        except (psutil.Error, OSError):
            continue
        addresses = [
            (str(c.laddr.ip), int(c.laddr.port))
            for c in sockets
            if c.status == psutil.CONN_LISTEN and c.laddr
        ]
        if addresses:
            found.append(MllpListener(process.pid, arguments, addresses))
    return found


def check_mllp(ctx: Context) -> Finding:
    """Every running MLLP listener that reaches beyond loopback has mutual TLS (issue 16).

    The server refuses such a start itself; this finds what got round it (an older Vigie
    still running, a unit edited by hand) by what is actually listening: each process whose
    command line is `vigie intake mllp`, its sockets in LISTEN, and its own options.
    """
    import argparse

    from vigie.intake.hl7 import server

    parser = argparse.ArgumentParser(add_help=False, exit_on_error=False)
    server.configure(parser)
    listeners = mllp_listeners()
    exposed: list[str] = []
    for listener in listeners:
        try:
            options, _unknown = parser.parse_known_args(listener.arguments)
            mutual = bool(options.tls_cert and options.tls_client_ca)
        except (argparse.ArgumentError, SystemExit):
            mutual = False
        beyond = [(ip, port) for ip, port in listener.addresses if not server.is_loopback(ip)]
        if beyond and not mutual:
            where = ", ".join(f"{ip}:{port}" for ip, port in beyond)
            exposed.append(f"pid {listener.pid} on {where}")
    if exposed:
        return Finding(
            "intake.mllp",
            FAILURE,
            "an MLLP listener reaches beyond loopback without mutual TLS, so anyone who "
            f"reaches its port can file documents under any patient: {'; '.join(exposed)}",
            "restart it with --tls-cert, --tls-key and --tls-client-ca (see docs/operations.md, "
            '"HL7 v2 over MLLP"), or bind it to 127.0.0.1',
        )
    if not listeners:
        return Finding("intake.mllp", OK, "no MLLP listener is running")
    return Finding(
        "intake.mllp",
        OK,
        f"{len(listeners)} MLLP listener(s): on loopback only or with mutual TLS",
    )


# --- backups and audit ---------------------------------------------------------------------

_BACKUP_FIX = (
    "run `vigie backup create DEST` every night (cron or a systemd timer) and keep a "
    "`vigie keys export` file in another safe place"
)


def check_backup(ctx: Context) -> Finding:
    from vigie.audit.models import AuditEvent

    skipped = _needs_database(ctx, "backup")
    if skipped:
        return skipped
    last = (
        AuditEvent.objects.filter(action="backup.create", outcome="success")
        .order_by("-seq")
        .first()
    )
    if last is None:
        return Finding("backup", FAILURE, "no backup has ever been made", _BACKUP_FIX)
    age = ctx.now - last.at
    snapshot = (last.extra or {}).get("snapshot", "?")
    if age > BACKUP_MAX_AGE:
        return Finding(
            "backup",
            FAILURE,
            f"no backup in the last day: the last one (snapshot {snapshot}) is "
            f"{_ago(age.total_seconds())} old",
            _BACKUP_FIX,
        )
    return Finding(
        "backup", OK, f"last backup {_ago(age.total_seconds())} ago (snapshot {snapshot})"
    )


def check_backup_verified(ctx: Context) -> Finding:
    from vigie.audit.models import AuditEvent

    skipped = _needs_database(ctx, "backup.verified")
    if skipped:
        return skipped
    verifies = AuditEvent.objects.filter(action="backup.verify").order_by("-seq")
    latest = verifies.first()
    fix = "run `vigie backup verify DEST` (weekly at least) and read the problems it lists"
    if latest is not None and latest.outcome != "success":
        snapshot = (latest.extra or {}).get("snapshot", "?")
        return Finding(
            "backup.verified",
            FAILURE,
            f"the last backup verification failed (snapshot {snapshot}, "
            f"{_ago((ctx.now - latest.at).total_seconds())} ago)",
            fix,
        )
    if latest is None:
        return Finding("backup.verified", WARNING, "no backup has ever been verified", fix)
    age = ctx.now - latest.at
    if age > VERIFY_MAX_AGE:
        return Finding(
            "backup.verified",
            WARNING,
            f"the last backup verification is {_ago(age.total_seconds())} old",
            fix,
        )
    snapshot = (latest.extra or {}).get("snapshot", "?")
    return Finding(
        "backup.verified",
        OK,
        f"backup verified {_ago(age.total_seconds())} ago (snapshot {snapshot})",
    )


_START_AUDIT_WATCH = (
    "start the audit watcher: `vigie audit watch` (e.g. `systemctl enable --now "
    "vigie-audit-watch`), then read its log"
)


def check_audit_watch(ctx: Context) -> Finding:
    """The watcher signs the tail every minute and runs the anomaly rules: it must be alive."""
    from vigie.audit import watch

    beat = watch.last_beat()
    limit = watch.silence_limit()
    if beat is None:
        return Finding(
            "audit.watch",
            FAILURE,
            "the audit watcher has never reported: the audit tail is not anchored every "
            "minute and the anomaly rules (crawler, many patients, denials) never run",
            _START_AUDIT_WATCH,
        )
    silence = (ctx.now - beat).total_seconds()
    if silence > limit.total_seconds():
        return Finding(
            "audit.watch",
            FAILURE,
            f"the audit watcher's last heartbeat was {_ago(silence)} ago "
            f"(limit {int(limit.total_seconds())} s): it is stopped or stuck, the audit tail "
            "is not anchored and the anomaly rules do not run",
            _START_AUDIT_WATCH,
        )
    return Finding("audit.watch", OK, f"the audit watcher is alive, last beat {_ago(silence)} ago")


def check_audit_checkpoint(ctx: Context) -> Finding:
    """Events wait at most one interval for their signed checkpoint; twice that is late."""
    from vigie.audit import checkpoints
    from vigie.audit.models import AuditEvent, AuditHead

    skipped = _needs_database(ctx, "audit.checkpoint")
    if skipped:
        return skipped
    head = AuditHead.objects.filter(pk=1).first()
    # The signed file, not the head row's checkpoint_seq: that column is the database's word,
    # which someone with database access alone can set to the head.
    signed = checkpoints.last_signed_seq()
    if head is None or head.seq <= signed:
        return Finding("audit.checkpoint", OK, "every audit event is under a signed checkpoint")
    oldest = (
        AuditEvent.objects.filter(seq__gt=signed)
        .order_by("seq")
        .values_list("at", flat=True)
        .first()
    )
    limit = timedelta(seconds=2 * settings.VIGIE_AUDIT_CHECKPOINT_SECONDS)
    if oldest is None or ctx.now - oldest <= limit:
        return Finding("audit.checkpoint", OK, "audit checkpoints are up to date")
    last = f"the last one {head.checkpoint_at:%Y-%m-%d %H:%M}" if head.checkpoint_at else "none yet"
    return Finding(
        "audit.checkpoint",
        WARNING,
        f"{head.seq - signed} audit event(s) have waited "
        f"{_ago((ctx.now - oldest).total_seconds())} for a signed checkpoint ({last})",
        "run `vigie audit watch` as a service (it signs a checkpoint every "
        f"{settings.VIGIE_AUDIT_CHECKPOINT_SECONDS} s), or `vigie audit checkpoint` from cron",
    )


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
    ("data.permissions", check_data_permissions),
    ("guard.heartbeat", check_guard_heartbeat),
    ("guard.lockdown", check_lockdown),
    ("guard.policy", check_policy),
    ("guard.nftables", check_nftables),
    ("guard.listeners", check_listeners),
    ("intake.mllp", check_mllp),
    ("backup", check_backup),
    ("backup.verified", check_backup_verified),
    ("audit.checkpoint", check_audit_checkpoint),
    ("audit.watch", check_audit_watch),
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
