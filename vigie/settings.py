"""The one settings module: everything is read from VIGIE_* variables, here and nowhere else.

Every variable read below is listed, with its default, in deploy/vigie.env.example (a test
compares the two). Production is the default mode. Settings never invent a secret: when the
secret key or the keyring is missing in production, `vigie.startup.preflight()` stops the
process with a one-line reason before anything is served. Only demo and test modes may
create their own.
"""

from __future__ import annotations

import socket as _socket
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import django_stubs_ext
from csp.constants import NONE, SELF

from vigie.lib import database_url, env
from vigie.lib.env import ConfigError

# Lets `admin.ModelAdmin[Patient]` and friends be subscripted at runtime, as the stubs type them.
django_stubs_ext.monkeypatch()

BASE_DIR = Path(__file__).resolve().parent

# production (default) | demo (synthetic clinic, said on every page) | test (the test suite)
VIGIE_MODE = env.choice("VIGIE_MODE", ["production", "demo", "test"], default="production")
PRODUCTION = VIGIE_MODE == "production"

# VIGIE_HOME holds the database, the blob store, the audit checkpoints and the policy: the
# data. The keys that open it never lie beside it (see vigie/vault/layout.py): a folder served
# or copied by mistake must yield nothing decryptable, and preflight refuses to start otherwise.
VIGIE_HOME = env.path("VIGIE_HOME", Path.cwd() / "var")
# `vigie init --production` refuses the default: it would put a production installation in
# ./var under whatever folder the command happened to start in.
VIGIE_HOME_EXPLICIT = env.string("VIGIE_HOME") is not None
VIGIE_BLOB_DIR = env.path("VIGIE_BLOB_DIR", VIGIE_HOME / "blobs")
# Where the sealed blobs live: `file` (VIGIE_BLOB_DIR) or `s3`, an S3-compatible object store
# that must refuse overwrites (If-None-Match: *; probed at start). Blobs stay ciphertext there;
# keys never go to the store. Credentials come from files only: an access key in clear
# configuration ends up in process listings and crash reports.
VIGIE_BLOB_STORE = env.choice("VIGIE_BLOB_STORE", ["file", "s3"], default="file")
VIGIE_S3_ENDPOINT_URL = env.string("VIGIE_S3_ENDPOINT_URL")  # unset: AWS itself
VIGIE_S3_BUCKET = env.string("VIGIE_S3_BUCKET")
VIGIE_S3_PREFIX = env.string("VIGIE_S3_PREFIX", "blobs/") or "blobs/"
VIGIE_S3_REGION = env.string("VIGIE_S3_REGION", "us-east-1") or "us-east-1"
VIGIE_S3_ACCESS_KEY_ID_FILE = env.string("VIGIE_S3_ACCESS_KEY_ID_FILE")
VIGIE_S3_SECRET_ACCESS_KEY_FILE = env.string("VIGIE_S3_SECRET_ACCESS_KEY_FILE")
# A store that does not answer must not hold a doctor's page or a sender's connection for
# minutes: connect and read timeouts (seconds), then retries with exponential backoff.
VIGIE_S3_CONNECT_TIMEOUT = env.integer("VIGIE_S3_CONNECT_TIMEOUT", 5, minimum=1)
VIGIE_S3_READ_TIMEOUT = env.integer("VIGIE_S3_READ_TIMEOUT", 20, minimum=1)
VIGIE_S3_MAX_ATTEMPTS = env.integer("VIGIE_S3_MAX_ATTEMPTS", 3, minimum=1, maximum=10)
# Blobs larger than this go up in parts of this size (multipart upload; S3's minimum is 5 MiB).
VIGIE_S3_PART_SIZE = env.integer("VIGIE_S3_PART_SIZE", 8 * 1024 * 1024, minimum=5 * 1024 * 1024)
if env.string("VIGIE_KEYRING_DIR") is not None:
    # The old name pointed at the keyring alone; the folder now holds every key.
    raise ConfigError(
        "VIGIE_KEYRING_DIR was renamed VIGIE_KEYS_DIR (the folder of all the keys); rename it"
    )
# The keyring, the secret key and the audit signing key, in one of two places:
# - systemd credentials: when the unit loads them (LoadCredentialEncrypted=, see
#   deploy/systemd/vigie-.service.d/), systemd decrypts them at start into the service's
#   private $CREDENTIALS_DIRECTORY, which is then the keys folder (read-only);
# - a keys folder of its own: /etc/vigie/keys in production; beside VIGIE_HOME, never in it,
#   for the demo and the tests (var/ -> var-keys/), so a demo teaches the production layout.
_CREDENTIALS_DIRECTORY = env.string("CREDENTIALS_DIRECTORY")
if _CREDENTIALS_DIRECTORY is not None and any(
    (Path(_CREDENTIALS_DIRECTORY) / name).exists()
    for name in ("keyring.json", "secret_key", "audit-signing.key")
):
    VIGIE_KEYS_SOURCE = "systemd credentials"
    VIGIE_KEYS_DIR = Path(_CREDENTIALS_DIRECTORY).absolute()
else:
    VIGIE_KEYS_SOURCE = "keys directory"
    VIGIE_KEYS_DIR = env.path(
        "VIGIE_KEYS_DIR",
        Path("/etc/vigie/keys") if PRODUCTION else VIGIE_HOME.with_name(f"{VIGIE_HOME.name}-keys"),
    )
VIGIE_KEYRING_FILE = VIGIE_KEYS_DIR / "keyring.json"
VIGIE_SECRET_KEY_DEFAULT_FILE = VIGIE_KEYS_DIR / "secret_key"
# Documents are encrypted in chunks of this size; it bounds memory per stream (64 KiB).
VIGIE_VAULT_CHUNK_SIZE = env.integer("VIGIE_VAULT_CHUNK_SIZE", 64 * 1024, minimum=1024)
# Largest document accepted by ingest (bytes); intake adapters answer clearly above it.
VIGIE_MAX_DOCUMENT_SIZE = env.integer("VIGIE_MAX_DOCUMENT_SIZE", 256 * 1024 * 1024, minimum=1)


def _secret_key() -> str:
    key = env.secret("VIGIE_SECRET_KEY")
    if key is None and VIGIE_SECRET_KEY_DEFAULT_FILE.is_file():
        try:
            key = VIGIE_SECRET_KEY_DEFAULT_FILE.read_text(encoding="utf-8").strip() or None
        except OSError:
            key = None
    # An empty key is left for preflight to refuse with a clear reason; Django itself would
    # only complain deep inside the first request that needs signing.
    return key or ""


SECRET_KEY = _secret_key()
# Where the key came from, for `vigie check`, `vigie init` and the refusal of keys inside the
# data (vigie/vault/layout.py): a file of the operator's (VIGIE_SECRET_KEY_FILE, which wins),
# the value itself in the environment (where child processes and crash reports see it), or
# else the keys folder's own file.
_secret_key_file = env.string("VIGIE_SECRET_KEY_FILE")
VIGIE_SECRET_KEY_FILE = Path(_secret_key_file) if _secret_key_file is not None else None
VIGIE_SECRET_KEY_IN_ENVIRONMENT = env.string("VIGIE_SECRET_KEY") is not None
# Django refuses to even read an empty SECRET_KEY, so preflight asks this flag instead.
VIGIE_SECRET_KEY_CONFIGURED = bool(SECRET_KEY)
DEBUG = env.boolean("VIGIE_DEBUG", default=False)
if DEBUG and PRODUCTION:
    raise ConfigError("VIGIE_DEBUG=true is refused in production mode")

ALLOWED_HOSTS = env.string_list("VIGIE_ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.string_list("VIGIE_CSRF_TRUSTED_ORIGINS")
# A refused form gets Vigie's page (in the user's language, with a way home), not Django's.
CSRF_FAILURE_VIEW = "vigie.portal.error_pages.csrf_failure"
# Reverse proxies (addresses or networks) whose X-Forwarded-For/-Proto we believe; set by
# `vigie serve --behind-proxy ADDR,...`. Empty: the headers are dropped.
VIGIE_TRUSTED_PROXIES = env.string_list("VIGIE_TRUSTED_PROXIES")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    # Third-party apps under French names in the admin (see vigie/accounts/third_party_apps.py).
    "vigie.accounts.third_party_apps.OtpConfig",
    "vigie.accounts.third_party_apps.OtpTotpConfig",
    "vigie.accounts.third_party_apps.OtpStaticConfig",
    "vigie.accounts.third_party_apps.CspConfig",
    "vigie.accounts",
    "vigie.records",
    "vigie.audit",
    "vigie.alerts",
    "vigie.portal",
    "vigie.guard",
    "vigie.intake",
    "vigie.backup",
    "vigie.ops",
    "vigie.demo",
]

MIDDLEWARE = [
    # First: every later layer (HTTPS redirect, lockout, audit) sees the real client.
    "vigie.lib.proxy.TrustedProxyMiddleware",
    "django.middleware.security.SecurityMiddleware",
    # Outermost after Security so that every answer, refusals included, gets the headers.
    "vigie.lib.headers.SecurityHeadersMiddleware",
    "csp.middleware.CSPMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    # Before CSRF: under no-referrer, browsers send Origin: null; Sec-Fetch-Site proves ours.
    "vigie.lib.csrf.FetchMetadataOriginMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    # Django's AuthenticationMiddleware and django-otp's OTPMiddleware in one, with one
    # statement for the user and the device (accounts.verified_user; a differential test
    # holds it to the two libraries' answers).
    "vigie.accounts.middleware.VerifiedUserMiddleware",
    # Expired sessions are flushed before deny-by-default looks at who is asking.
    "vigie.accounts.middleware.SessionPolicyMiddleware",
    # Before deny-by-default: a decoy touched by an outsider (no session) must alarm too.
    "vigie.guard.tripwire.CanaryTripwireMiddleware",
    "vigie.accounts.deny_by_default.DenyByDefaultMiddleware",
    # After deny-by-default: only signed-in users reach it; in lockdown no records are served.
    "vigie.guard.middleware.LockdownMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "vigie.urls"
WSGI_APPLICATION = "vigie.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "vigie.lib.context.vigie_mode",
                "vigie.guard.context.guard_status",
                "vigie.accounts.psc.context.psc",
            ],
        },
    },
]

# SQLite is the embedded default; DATABASE_URL selects PostgreSQL for production.
# SQLite runs in WAL mode with synchronous=FULL: a committed row survives power loss, which
# "nothing lost" requires (WAL's default NORMAL may drop the last commits).
_SQLITE_OPTIONS = {
    "init_command": ("PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON;"),
    "transaction_mode": "IMMEDIATE",
    "timeout": 20,
}
_database_url = env.string("DATABASE_URL")
# Production runs on PostgreSQL; `vigie check` fails SQLite in production unless the clinic
# accepts it explicitly here (a small single-machine installation).
VIGIE_ALLOW_SQLITE = env.boolean("VIGIE_ALLOW_SQLITE", default=False)
DATABASES: dict[str, dict[str, Any]]
if _database_url is None:
    DATABASES = {
        "default": {
            # Django's SQLite backend, waiting for the write lock without long sleeps.
            "ENGINE": "vigie.lib.sqlite",
            "NAME": str(VIGIE_HOME / "vigie.sqlite3"),
            "OPTIONS": _SQLITE_OPTIONS,
            # Reuse each thread's connection: opening one (and its PRAGMAs) per request was
            # the second-hottest spot of the document fetch.
            "CONN_MAX_AGE": 600,
        }
    }
else:
    # One server (postgres://user@host:5432/vigie) or, for a primary with standbys, libpq's
    # list of them: postgres://user@h1:5432,h2:5432/vigie?target_session_attrs=read-write.
    # With the list, each new connection tries the servers in order and keeps the first that
    # accepts writes, so after a standby's promotion the nodes reconnect to it by themselves
    # (vigie/lib/database_url.py; Django passes HOST and PORT lists to libpq unchanged).
    _db = database_url.parse(_database_url, conn_max_age=60, conn_health_checks=True)
    if _db.get("ENGINE") not in {
        "django.db.backends.postgresql",
        "django.db.backends.sqlite3",
    }:
        raise ConfigError("DATABASE_URL must use postgres:// (or sqlite:// for local tests)")
    if _db["ENGINE"] == "django.db.backends.sqlite3":
        _db["ENGINE"] = "vigie.lib.sqlite"
        _db["OPTIONS"] = _SQLITE_OPTIONS
    else:
        # Django's backend, without the health check's round trip on a connection that
        # served the previous request cleanly a moment ago (vigie/lib/postgresql/base.py).
        _db["ENGINE"] = "vigie.lib.postgresql"
        # Which node a session belongs to, in pg_stat_activity (a group of nodes shares one
        # server); `?application_name=` in DATABASE_URL wins. The lock sessions of the
        # cluster-wide jobs add the pid (vigie/lib/singleton.py).
        _db.setdefault("OPTIONS", {}).setdefault(
            "application_name", f"vigie@{_socket.gethostname()}"[:63]
        )
    DATABASES = {"default": {**_db}}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
AUTH_USER_MODEL = "accounts.User"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {
        "NAME": "django.contrib.auth.password_validation.MinimumLengthValidator",
        "OPTIONS": {"min_length": 12},
    },
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

# French first, English too.
LANGUAGE_CODE = "fr"
LANGUAGES = [("fr", "Français"), ("en", "English")]
LOCALE_PATHS = [BASE_DIR / "locale"]
# English dates day-first (7 Dec 2026), never the American month-first: vigie/lib/formats/en.
FORMAT_MODULE_PATH = ["vigie.lib.formats"]
TIME_ZONE = env.string("VIGIE_TIME_ZONE", "Europe/Paris") or "Europe/Paris"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
# A wheel carries its static assets, collected when it was built (build_hooks.py): an installed
# Vigie serves them from inside its package and never collects at run time. A source checkout
# has no such folder and collects into VIGIE_HOME/static (`vigie serve` does it at start).
_PACKAGED_STATIC = BASE_DIR / "static_collected"
VIGIE_STATIC_PACKAGED = env.string("VIGIE_STATIC_ROOT") is None and _PACKAGED_STATIC.is_dir()
STATIC_ROOT = (
    _PACKAGED_STATIC
    if VIGIE_STATIC_PACKAGED
    else env.path("VIGIE_STATIC_ROOT", VIGIE_HOME / "static")
)
# Vigie has no uploads. Set anyway: with Django's defaults (MEDIA_ROOT = ""), test servers
# serve the working directory under every path (the probe found /.git/config that way).
MEDIA_URL = "/media/"
MEDIA_ROOT = VIGIE_HOME / "media"
STATICFILES_DIRS = [BASE_DIR / "static"]

# Security headers and cookies. Production behaves as if behind TLS; a plain-HTTP local run
# (demo, tests) relaxes only what would make the site unusable over http://127.0.0.1.
_TLS = env.boolean("VIGIE_TLS", default=PRODUCTION)
SECURE_SSL_REDIRECT = env.boolean("VIGIE_SSL_REDIRECT", default=_TLS)
# Except the health check: a load balancer checks each node over plain HTTP, without the
# X-Forwarded-Proto it adds to clients' requests. Redirected, HAProxy's check never got its
# 200 and took every node out: the portal was down behind the shipped configuration
# (tests/test_behind_proxies.py). /health answers "ok" and nothing else.
SECURE_REDIRECT_EXEMPT = [r"^health$"]
# The certificate chain and private key (PEM files) with which `vigie serve` terminates TLS
# itself, when no reverse proxy does; `vigie check` inspects the same two files.
VIGIE_TLS_CERT = env.string("VIGIE_TLS_CERT")
VIGIE_TLS_KEY = env.string("VIGIE_TLS_KEY")
SESSION_COOKIE_SECURE = _TLS
CSRF_COOKIE_SECURE = _TLS
SECURE_HSTS_SECONDS = 63072000 if _TLS else 0
SECURE_HSTS_INCLUDE_SUBDOMAINS = True
# The preload flag only takes effect if someone submits the domain to browsers' list; sending
# it costs nothing and lets a clinic do so. VIGIE_HSTS_PRELOAD=false drops it.
SECURE_HSTS_PRELOAD = env.boolean("VIGIE_HSTS_PRELOAD", default=True)
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "no-referrer"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_HTTPONLY = True
# Django's database sessions, loaded with a prepared statement (the hot path of every read).
SESSION_ENGINE = "vigie.accounts.session_store"
SESSION_COOKIE_SAMESITE = "Strict"
CSRF_COOKIE_HTTPONLY = True
SILENCED_SYSTEM_CHECKS: list[str] = []

# --- accounts: login, second factor, sessions, lockout (see vigie/accounts) ---
# The login view reserves an attempt (accounts/lockout.py) before it calls authenticate().
AUTHENTICATION_BACKENDS = ["django.contrib.auth.backends.ModelBackend"]
# Argon2id at OWASP's minimum (19 MiB, 2 passes, 1 lane). Any argon2 hash verifies with its
# own parameters and is rehashed at these on the next login; PBKDF2 is there only so older
# hashes still verify (and get upgraded the same way).
PASSWORD_HASHERS = [
    "vigie.accounts.hashers.VigieArgon2PasswordHasher",
    "django.contrib.auth.hashers.PBKDF2PasswordHasher",
]
LOGIN_URL = "accounts:login"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "accounts:login"

# Sessions live server-side (database) so that logout and expiry really end them: a copied
# cookie is worthless afterwards. Idle and absolute limits are enforced by
# vigie.accounts.middleware.SessionPolicyMiddleware; the cookie itself dies with the browser.
VIGIE_SESSION_IDLE_MINUTES = env.integer("VIGIE_SESSION_IDLE_MINUTES", 15, minimum=1)
VIGIE_SESSION_ABSOLUTE_HOURS = env.integer("VIGIE_SESSION_ABSOLUTE_HOURS", 12, minimum=1)
SESSION_COOKIE_AGE = VIGIE_SESSION_ABSOLUTE_HOURS * 3600
SESSION_EXPIRE_AT_BROWSER_CLOSE = True
# Sensitive actions (and the admin) need a second-factor proof at most this old.
VIGIE_REAUTH_MAX_AGE_SECONDS = env.integer("VIGIE_REAUTH_MAX_AGE_SECONDS", 300, minimum=30)

# Lockout (vigie/accounts/lockout.py): every password and code is counted before it is
# checked. Per source address, N attempts per M-minute window, then a hard lock; per account,
# N second-factor codes per window, then a hard lock; per account, passwords get a delay that
# doubles from a few seconds up to a cap (an outsider typing a doctor's identifier may slow
# the doctor down, never lock them out) and an alert once attempts go on.
VIGIE_LOCKOUT_FAILURES = env.integer("VIGIE_LOCKOUT_FAILURES", 5, minimum=1)
VIGIE_LOCKOUT_MINUTES = env.integer("VIGIE_LOCKOUT_MINUTES", 15, minimum=1)
VIGIE_LOGIN_DELAY_FREE_ATTEMPTS = env.integer("VIGIE_LOGIN_DELAY_FREE_ATTEMPTS", 3, minimum=1)
VIGIE_LOGIN_DELAY_FIRST_SECONDS = env.integer("VIGIE_LOGIN_DELAY_FIRST_SECONDS", 5, minimum=1)
VIGIE_LOGIN_DELAY_MAX_SECONDS = env.integer("VIGIE_LOGIN_DELAY_MAX_SECONDS", 120, minimum=1)
VIGIE_LOGIN_ALERT_ATTEMPTS = env.integer("VIGIE_LOGIN_ALERT_ATTEMPTS", 10, minimum=1)
# The lockout counts codes; django-otp's own per-device back-off would make a
# correct code fail for seconds after a typo, with no added protection.
OTP_TOTP_THROTTLE_FACTOR = 0
OTP_STATIC_THROTTLE_FACTOR = 0
OTP_TOTP_ISSUER = env.string("VIGIE_TOTP_ISSUER", "Vigie") or "Vigie"
# Sign-in methods each role may use (vigie/accounts/signin_policy.py), `role=m1,m2;...`:
# psc (Pro Santé Connect), passkey (a passkey alone, with user verification),
# password_passkey (the password, then a passkey), password_totp (the password, then an
# authenticator-app or recovery code). A role left out keeps its default. Production: doctors
# by PSC or passkeys, IT and the data protection officer by passkeys only (phishing-resistant;
# this is how they are required to use passkeys); a clinic adds password_totp where it
# accepts codes. An account whose session was opened another way is led to register a
# passkey (never locked out, never let further). Demo and tests allow every method, so the
# seeded accounts keep their password and code.
_SIGNIN_METHODS = ("psc", "passkey", "password_passkey", "password_totp")
VIGIE_SIGNIN_METHODS = env.choice_lists(
    "VIGIE_SIGNIN_METHODS",
    ("doctor", "admin", "auditor"),
    _SIGNIN_METHODS,
    default={
        "doctor": ["psc", "passkey", "password_passkey"],
        "admin": ["passkey", "password_passkey"],
        "auditor": ["passkey", "password_passkey"],
    }
    if PRODUCTION
    else {role: list(_SIGNIN_METHODS) for role in ("doctor", "admin", "auditor")},
)
# Vigie unregisters django-otp's device admins (accounts/admin.py); should one come back, it
# still shows no key, QR code or recovery code.
OTP_ADMIN_HIDE_SENSITIVE_DATA = True

# --- Pro Santé Connect (vigie/accounts/psc; docs/operations.md, "Pro Santé Connect") ---
# Unset: no PSC button, no PSC routes answer. Set to the provider's discovery document (PSC
# production or its sandbox, the "bac à sable"): its endpoints and keys are read from there.
VIGIE_PSC_DISCOVERY_URL = env.string("VIGIE_PSC_DISCOVERY_URL")
VIGIE_PSC_CLIENT_ID = env.string("VIGIE_PSC_CLIENT_ID")
# The client secret PSC issued, preferably as a file readable only by Vigie (`vigie check`
# reports that file's mode).
VIGIE_PSC_CLIENT_SECRET = env.secret("VIGIE_PSC_CLIENT_SECRET")
_psc_secret_file = env.string("VIGIE_PSC_CLIENT_SECRET_FILE")
VIGIE_PSC_CLIENT_SECRET_FILE = Path(_psc_secret_file) if _psc_secret_file is not None else None
# PSC's documented scopes and level of assurance (eIDAS substantial: CPS card or e-CPS).
VIGIE_PSC_SCOPES = env.string("VIGIE_PSC_SCOPES", "openid scope_all") or "openid scope_all"
VIGIE_PSC_ACR_VALUES = env.string("VIGIE_PSC_ACR_VALUES", "eidas1") or "eidas1"
VIGIE_PSC_ENABLED = VIGIE_PSC_DISCOVERY_URL is not None
if VIGIE_PSC_ENABLED:
    if not VIGIE_PSC_CLIENT_ID or not VIGIE_PSC_CLIENT_SECRET:
        raise ConfigError(
            "VIGIE_PSC_DISCOVERY_URL is set but VIGIE_PSC_CLIENT_ID or "
            "VIGIE_PSC_CLIENT_SECRET_FILE is not: PSC needs both"
        )
    _psc_url = urlsplit(VIGIE_PSC_DISCOVERY_URL or "")
    # Plain HTTP only to this machine (a test provider): anywhere else the provider's keys
    # and the tokens would cross the network in clear.
    if _psc_url.scheme != "https" and _psc_url.hostname not in ("127.0.0.1", "localhost", "::1"):
        raise ConfigError(f"VIGIE_PSC_DISCOVERY_URL={VIGIE_PSC_DISCOVERY_URL!r} is not https://")


# --- security headers, CSP, deny-by-default (see vigie/lib/headers.py, vigie/portal) ---
# Everything else (X-Robots-Tag, Cache-Control) is set by vigie.lib.headers.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF],
        "style-src": [SELF],
        "img-src": [SELF, "data:"],
        "object-src": [NONE],
        "frame-src": [SELF],
        "frame-ancestors": [NONE],
        "base-uri": [NONE],
        "form-action": [SELF],
    }
}


# --- records access: emergency access (break-the-glass) ---
# How long a break-the-glass grant lasts (hours). Short on purpose: an emergency is handled
# in hours; a longer need is a care relationship, which IT records in the admin.
VIGIE_EMERGENCY_ACCESS_HOURS = env.integer("VIGIE_EMERGENCY_ACCESS_HOURS", 4, minimum=1)
# The lockdown flag that every access decision asks first (records.access.ensure_served).
# Named here, not imported, because records sits below guard in the layers: the guard owns
# the flag, the access decision only reads it. Not configurable from the environment.
VIGIE_LOCKDOWN_FLAG = "vigie.guard.lockdown.is_locked_down"

# --- audit and alerts ---
# Signed checkpoints of the audit chain live outside the database (see vigie/audit/checkpoints.py).
VIGIE_AUDIT_CHECKPOINT_FILE = env.path(
    "VIGIE_AUDIT_CHECKPOINT_FILE", VIGIE_HOME / "audit" / "checkpoints.jsonl"
)
VIGIE_AUDIT_CHECKPOINT_EVERY = env.integer("VIGIE_AUDIT_CHECKPOINT_EVERY", 1000, minimum=1)
# At most a minute: the events after the last signed checkpoint can be rewritten by whoever
# holds the database, and `vigie audit verify` fails once that tail is two intervals old.
VIGIE_AUDIT_CHECKPOINT_SECONDS = env.integer(
    "VIGIE_AUDIT_CHECKPOINT_SECONDS", 60, minimum=1, maximum=60
)
# `vigie audit watch` (the periodic checkpoint writer and the anomaly rules) proves it is alive
# here; `vigie check` fails when this is older than two checkpoint intervals.
VIGIE_AUDIT_WATCH_HEARTBEAT_FILE = env.path(
    "VIGIE_AUDIT_WATCH_HEARTBEAT_FILE", VIGIE_HOME / "audit" / "watch.heartbeat"
)
# Concurrent reads share one commit (one fsync) through a per-process appender thread.
VIGIE_AUDIT_GROUP_COMMIT = env.boolean("VIGIE_AUDIT_GROUP_COMMIT", default=True)
# Anonymous refusals (no or a wrong API key) are counted per source and minute, and one
# audit event per source, minute and reason says how many (vigie/audit/refusals.py). Beyond
# this many refusals in a minute a source gets 429 and Retry-After, without its key being
# checked or anything appended to the audit chain (the count still reaches it).
VIGIE_REFUSALS_PER_MINUTE = env.integer("VIGIE_REFUSALS_PER_MINUTE", 60, minimum=1)
# Alert channels: none is required; each one configured is used.
VIGIE_ALERT_EMAILS = env.string_list("VIGIE_ALERT_EMAILS")
VIGIE_ALERT_WEBHOOK_URL = env.string("VIGIE_ALERT_WEBHOOK_URL")
VIGIE_ALERT_WEBHOOK_TIMEOUT = env.integer("VIGIE_ALERT_WEBHOOK_TIMEOUT", 5, minimum=1)
# "/dev/log", or host:port for a remote syslog over UDP.
VIGIE_ALERT_SYSLOG = env.string("VIGIE_ALERT_SYSLOG")
# Deliveries per channel per minute; beyond that alerts are stored (and counted) only.
VIGIE_ALERT_RATE_PER_MINUTE = env.integer("VIGIE_ALERT_RATE_PER_MINUTE", 30, minimum=1)

# --- exposure guard ---
# The declared exposure and how the guard watches it (see vigie/guard/policy.py).
VIGIE_POLICY_FILE = env.path("VIGIE_POLICY_FILE", VIGIE_HOME / "vigie-policy.toml")
# The portal shows administrators a red banner when the guard has been silent this long.
VIGIE_GUARD_SILENCE_SECONDS = env.integer("VIGIE_GUARD_SILENCE_SECONDS", 120, minimum=10)

LOGGING: dict[str, Any] = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env.string("VIGIE_LOG_LEVEL", "INFO")},
    "loggers": {},
}
if VIGIE_MODE == "demo":
    # Each signed checkpoint is logged as a JSON line, for a deployment to route to syslog;
    # in the demo it only interleaves with the logins table and the server's output. The
    # checkpoints are still signed and written to their file.
    LOGGING["loggers"]["vigie.audit.checkpoints"] = {"level": "WARNING"}
