"""`vigie init --production`: the first command of a production installation.

Creates VIGIE_HOME (0700) for the data, the keys folder apart from it (VIGIE_KEYS_DIR,
/etc/vigie/keys by default, 0700) with the secret key, the keyring and the audit signing key
(0600, via `vigie.startup.bootstrap_home()`), and the exposure guard's policy file from the commented
template shipped in the package; then prints what it made and the numbered next steps.

Nothing is ever overwritten: the keyring holds the only copy of the keys to the documents, and
an edited policy is the operator's work. Running it again changes nothing and says so.

`--production` is mandatory: creating the keys that will protect real patients' documents is
done on purpose, in the right VIGIE_HOME, never by a mistyped command.
"""

from __future__ import annotations

import os
import stat
from importlib import resources
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from vigie.lib import durable
from vigie.lib.env import ConfigError
from vigie.startup import StartupError, bootstrap_home, redact_url
from vigie.vault.errors import VaultError

POLICY_TEMPLATE = "policy-template.toml"


def policy_template() -> str:
    """The commented policy template (the same text as deploy/vigie-policy.example.toml)."""
    return resources.files("vigie.guard").joinpath(POLICY_TEMPLATE).read_text(encoding="utf-8")


def _mode(path: Path) -> str:
    return f"{stat.S_IMODE(path.stat().st_mode):04o}"


def _loose(path: Path) -> bool:
    """True when group or others have any access to `path`."""
    return bool(stat.S_IMODE(path.stat().st_mode) & 0o077)


class Command(BaseCommand):
    help = (
        "Prepare a production installation: VIGIE_HOME, secret key, keyring and policy file "
        "(never overwritten), then print the next steps."
    )
    # Runs before any database or configuration is complete: nothing to check yet.
    requires_system_checks = ()

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--production",
            action="store_true",
            help="required: create the production keys and policy in VIGIE_HOME",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if not options["production"]:
            raise CommandError(
                "`vigie init` creates the keys of a production installation: run "
                "`vigie init --production` (a demo needs no init: `vigie demo`)",
                returncode=2,
            )
        if settings.VIGIE_MODE != "production":
            raise CommandError(
                f"`vigie init --production` needs VIGIE_MODE=production "
                f"(it is {settings.VIGIE_MODE}); a demo sets itself up with `vigie demo`",
                returncode=2,
            )
        if not settings.VIGIE_HOME_EXPLICIT:
            raise CommandError(
                "set VIGIE_HOME (e.g. /var/lib/vigie, as in deploy/vigie.env.example): without "
                "it the keys would land in ./var under the current directory",
                returncode=2,
            )
        os.umask(0o077)
        home = Path(settings.VIGIE_HOME)
        policy = Path(settings.VIGIE_POLICY_FILE)
        keys_dir = Path(settings.VIGIE_KEYS_DIR)
        from vigie.audit.checkpoints import signing_key_path

        # A secret key given in the environment is used as is; otherwise it is a file here.
        secret_from_env = bool(
            settings.VIGIE_SECRET_KEY_IN_ENVIRONMENT or settings.VIGIE_SECRET_KEY_FILE
        )
        watched = [home, keys_dir]
        if not secret_from_env:
            watched.append(Path(settings.VIGIE_SECRET_KEY_DEFAULT_FILE))
        watched += [Path(settings.VIGIE_KEYRING_FILE), signing_key_path(), policy]
        existed = {path: path.exists() for path in watched}

        try:
            durable.make_private_dir(home)
            bootstrap_home()
            self._write_policy(policy)
        except (StartupError, VaultError, ConfigError) as exc:
            raise CommandError(str(exc), returncode=2) from None
        except OSError as exc:
            where = exc.filename or home
            raise CommandError(f"{where}: {exc.strerror or exc}", returncode=2) from None

        self.stdout.write(f"Vigie production setup: data in {home}, keys in {keys_dir}")
        changed = False
        for path in watched:
            label = "directory" if path.is_dir() else "file"
            if existed[path]:
                self.stdout.write(f"  kept     {path}  ({_mode(path)}, {label} already there)")
            else:
                changed = True
                self.stdout.write(f"  created  {path}  ({_mode(path)})")
        if secret_from_env:
            self.stdout.write(
                "  using    the secret key from the environment (VIGIE_SECRET_KEY[_FILE])"
            )
        if not changed:
            self.stdout.write(
                "Nothing changed: everything was already there (init never overwrites)."
            )
        for path in watched:
            if path.exists() and _loose(path) and path != policy:
                self.stderr.write(
                    f"warning: {path} is open to other users (mode {_mode(path)}): "
                    f"chmod {'700' if path.is_dir() else '600'} {path}"
                )
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            self.stderr.write(
                f"warning: run as root, these files belong to root; the services run as "
                f"`vigie`: chown -R vigie:vigie {home} {keys_dir}"
            )
        self._next_steps(home, keys_dir, policy)

    def _write_policy(self, policy: Path) -> None:
        if policy.exists():
            return
        durable.make_private_dir(policy.parent)
        durable.write_new(policy, [policy_template().encode("utf-8")])

    def _next_steps(self, home: Path, keys_dir: Path, policy: Path) -> None:
        database = os.environ.get("DATABASE_URL")
        now_db = f"now {redact_url(database)}" if database else "now SQLite in VIGIE_HOME"
        hosts = ",".join(settings.ALLOWED_HOSTS)
        steps = [
            f"The system user: `useradd --system --home-dir {home} --shell /usr/sbin/nologin "
            f"vigie`; the services run as `vigie` and VIGIE_HOME must be its own "
            f"(`chown -R vigie:vigie {home} {keys_dir}` if this ran as root).",
            f"Keys: {keys_dir} holds the keyring, the secret key and the audit signing key, "
            f"apart from the data in {home}; Vigie refuses to start with keys in the data. "
            "On a host with systemd 250 or later you may instead encrypt them as systemd "
            "credentials (`systemd-creds encrypt`, deploy/systemd/vigie-.service.d/).",
            "Settings: copy deploy/vigie.env.example to /etc/vigie/vigie.env (root, mode 0600) "
            "and fill it in. Run every `vigie` command below as the `vigie` user with those "
            "settings, e.g. `systemd-run --pty --wait --collect --uid=vigie --gid=vigie "
            "-p EnvironmentFile=/etc/vigie/vigie.env /opt/vigie/bin/vigie COMMAND`.",
            f"DATABASE_URL: PostgreSQL, e.g. postgres://vigie@%2Frun%2Fpostgresql/vigie after "
            f"`createuser vigie && createdb -O vigie vigie` ({now_db}).",
            f"VIGIE_ALLOWED_HOSTS=the portal's name and VIGIE_CSRF_TRUSTED_ORIGINS=https://that "
            f"name (now {hosts or 'empty'}).",
            f"Policy: edit {policy}: what may listen (nginx on 443, vigie-web on "
            f"127.0.0.1:8000, MLLP on 2575, PostgreSQL), from which networks, and the probe's "
            f"address and vantage point; then `vigie guard check-policy`.",
            "`vigie migrate`: creates the database tables.",
            "`vigie createsuperuser`: the first IT administrator (role admin), who enrols a "
            "second factor (TOTP) at first login and then creates the other accounts in the "
            "admin. Administrators never read documents; doctors do.",
            "TLS and nginx: a certificate for the portal's name, then deploy/nginx/vigie.conf "
            "(server_name, certificate paths) and `nginx -t && systemctl reload nginx`. nginx "
            "only forwards to 127.0.0.1:8000: it never serves files.",
            "systemd: copy deploy/systemd/* to /etc/systemd/system/ (they expect Vigie in "
            "/opt/vigie and VIGIE_HOME=/var/lib/vigie), `systemctl daemon-reload`, then "
            "`systemctl enable --now vigie-web vigie-guard vigie-backup.timer` "
            "(and vigie-mllp, vigie-folder if you take results that way).",
            "`vigie keys export /media/usb/vigie-keys.vkx`: now and after every "
            "`vigie keys rotate`; keep the file and its passphrase apart from the backups.",
            "`vigie backup create /srv/vigie-backup --keep-daily 7 --keep-weekly 4` once by "
            "hand (the timer does it nightly), then `vigie backup verify /srv/vigie-backup`.",
            "`vigie check`: everything above, checked.",
        ]
        self.stdout.write("")
        self.stdout.write("Next steps:")
        for number, text in enumerate(steps, start=1):
            self.stdout.write(f"  {number:2d}. {text}")
        self.stdout.write(
            f"Keep the keys ({keys_dir}) apart from the data and out of its backups: "
            "without them no document can be read, with them the data is plaintext."
        )
