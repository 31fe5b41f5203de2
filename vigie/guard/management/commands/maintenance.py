"""`vigie maintenance open|list|close|extend`: temporary, self-closing openings of the firewall.

Every window has a mandatory ttl, capped by the policy, enforced by the kernel. Extending one
needs an administrator's password and a current second-factor code, asked for here (from the
terminal, or one per line on standard input when it is not a terminal).
"""

from __future__ import annotations

import getpass
import sys
from typing import Any, TextIO

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone
from django.utils.translation import gettext as _

from vigie.accounts.models import Role, User
from vigie.accounts.otp import verify_code
from vigie.audit.log import record
from vigie.guard import nft
from vigie.guard.models import MaintenanceWindow
from vigie.guard.policy import Policy, PolicyError, load_policy, parse_duration
from vigie.guard.windows import (
    WindowError,
    check_ttl,
    close_window,
    extend_window,
    format_duration,
    list_windows,
    open_window,
)


def _duration(text: str) -> float:
    try:
        return parse_duration(text, key="--ttl")
    except PolicyError as exc:
        raise CommandError(str(exc)) from None


class Command(BaseCommand):
    help = "Open, list, close or extend maintenance windows (temporary firewall openings)."
    # Tests (and scripts) hand the password and code in through call_command(stdin=...).
    stealth_options = ("stdin",)

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--policy",
            default=None,
            help="policy file (default: VIGIE_POLICY_FILE)",
        )
        sub = parser.add_subparsers(dest="action", required=True)
        opening = sub.add_parser("open", help="let one address reach a port, for a limited time")
        opening.add_argument("--who", required=True, help="who the window is for")
        opening.add_argument("--reason", required=True, help="why it is needed")
        opening.add_argument("--source", required=True, help="the one IP address let in")
        opening.add_argument("--port", type=int, default=None, help="default: the policy's first")
        opening.add_argument(
            "--ttl", required=True, help="how long, e.g. 30m or 2h (capped by the policy)"
        )
        listing = sub.add_parser("list", help="windows not yet closed (--all: also past ones)")
        listing.add_argument("--all", action="store_true", help="include closed windows")
        closing = sub.add_parser("close", help="close a window now and cut its sessions")
        closing.add_argument("id", type=int)
        extending = sub.add_parser("extend", help="give an open window a new end (admin only)")
        extending.add_argument("id", type=int)
        extending.add_argument("--ttl", required=True, help="new duration from now, e.g. 30m")
        extending.add_argument("--admin", required=True, help="administrator's username")

    def handle(self, *args: Any, **options: Any) -> None:
        action = options["action"]
        try:
            if action == "open":
                self._open(options)
            elif action == "list":
                self._list(include_closed=options["all"])
            elif action == "close":
                self._close(options["id"])
            else:
                self._extend(options)
        except (PolicyError, WindowError, nft.NftUnavailable, nft.NftError) as exc:
            raise CommandError(str(exc).splitlines()[0] if str(exc) else repr(exc)) from None

    # --- subcommands ---

    def _policy(self, options: dict[str, Any]) -> Policy:
        return load_policy(options["policy"] or settings.VIGIE_POLICY_FILE)

    def _window(self, pk: int) -> MaintenanceWindow:
        window = MaintenanceWindow.objects.filter(pk=pk).first()
        if window is None:
            raise CommandError(_("no maintenance window %(id)s") % {"id": pk})
        return window

    def _open(self, options: dict[str, Any]) -> None:
        ttl = _duration(options["ttl"])
        window = open_window(
            self._policy(options),
            who=options["who"],
            reason=options["reason"],
            source=options["source"],
            ttl=ttl,
            port=options["port"],
        )
        self.stdout.write(
            _(
                "window %(id)s open: %(source)s may reach port %(port)s until %(end)s "
                "(%(ttl)s); the kernel closes it then, even if Vigie is down"
            )
            % {
                "id": window.pk,
                "source": window.source,
                "port": window.port,
                "end": _clock(window.ends_at),
                "ttl": format_duration(ttl),
            }
        )

    def _close(self, pk: int) -> None:
        window = close_window(self._window(pk), by=_operator())
        self.stdout.write(
            _("window %(id)s closed (%(how)s): %(source)s can no longer reach port %(port)s")
            % {
                "id": window.pk,
                "how": window.get_close_reason_display(),
                "source": window.source,
                "port": window.port,
            }
        )

    def _extend(self, options: dict[str, Any]) -> None:
        policy = self._policy(options)
        # Refuse an over-long extension before asking for secrets (and consuming a code).
        ttl = check_ttl(policy, _duration(options["ttl"]))
        window = self._window(options["id"])
        admin = self._reauthenticate(options["admin"], window, options.get("stdin") or sys.stdin)
        window = extend_window(policy, window, by=admin.get_username(), ttl=ttl, actor=admin)
        self.stdout.write(
            _("window %(id)s extended by %(admin)s: open until %(end)s (%(ttl)s from now)")
            % {
                "id": window.pk,
                "admin": admin.get_username(),
                "end": _clock(window.ends_at),
                "ttl": format_duration(ttl),
            }
        )

    def _reauthenticate(self, username: str, window: MaintenanceWindow, stdin: TextIO) -> User:
        """The named active administrator, after password and code; else audited refusal."""
        password = _secret(_("Password for %(user)s: ") % {"user": username}, stdin)
        code = _secret(_("Authentication code: "), stdin)
        user = User.objects.filter(username__iexact=username.strip()).first()
        refusal = ""
        if user is None or not user.is_active or user.role != Role.ADMIN:
            refusal = "not_an_active_admin"
        elif not password or not user.check_password(password):
            refusal = "wrong_password"
        elif not code or not verify_code(user, code):
            refusal = "wrong_code"
        if not refusal and user is not None:
            return user
        record(
            "maintenance.window.extended",
            actor=user,
            outcome="denied",
            reason=refusal,
            extra={"window": window.pk, "admin": username, "by": _operator()},
        )
        # One message for every cause: the terminal must not confirm which factor was wrong.
        raise CommandError(
            _(
                "re-authentication refused: %(user)s is not an active administrator, or the "
                "password or code is wrong"
            )
            % {"user": username}
        )

    def _list(self, *, include_closed: bool) -> None:
        windows = list_windows(include_closed=include_closed)
        if not windows:
            self.stdout.write(
                _("no maintenance windows") if include_closed else _("no open windows")
            )
            return
        headers = [
            _("id"),
            _("source"),
            _("port"),
            _("who"),
            _("reason"),
            _("opened"),
            _("ends"),
            _("state"),
            _("verified"),
        ]
        rows = [_row(w) for w in windows]
        widths = [max(len(str(r[i])) for r in [headers, *rows]) for i in range(len(headers))]
        for line in [headers, *rows]:
            self.stdout.write(
                "  ".join(str(c).ljust(w) for c, w in zip(line, widths, strict=True)).rstrip()
            )


def _clock(moment: Any) -> str:
    return str(timezone.localtime(moment).strftime("%Y-%m-%d %H:%M:%S"))


def _row(window: MaintenanceWindow) -> list[str]:
    reason = window.reason if len(window.reason) <= 40 else window.reason[:39] + "…"
    if window.closed_at is None and window.is_open:
        state = _("open")
        ends = _("%(end)s (%(left)s left)") % {
            "end": _clock(window.ends_at),
            "left": format_duration(window.remaining.total_seconds()),
        }
    else:
        ends = _clock(window.closed_at or window.ends_at)
        state = (
            window.get_close_reason_display()
            if window.closed_at is not None
            else _("ended, not yet reconciled")
        )
    if window.verified_at is None:
        verified = "-"
    elif window.verified_closed is None:
        verified = _("could not check")
    else:
        verified = _("closed") if window.verified_closed else _("STILL OPEN")
    return [
        str(window.pk),
        window.source,
        str(window.port),
        window.who,
        reason,
        _clock(window.opened_at),
        ends,
        state,
        verified,
    ]


def _operator() -> str:
    """Who ran the command, for the record (the Unix account; the CLI has no web user)."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def _secret(prompt: str, stdin: TextIO) -> str:
    if stdin.isatty():
        return getpass.getpass(prompt)
    # Not a terminal (a script, a test): one value per line, never echoed back.
    return stdin.readline().rstrip("\r\n")
