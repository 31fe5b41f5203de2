"""`vigie guard run|check-policy|forget HOST`: the exposure guard daemon, a dry check of its
policy, and forgetting a retired host (its guard no longer expected to beat)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils.translation import gettext as _

from vigie.guard import daemon, nft
from vigie.guard.policy import Policy, PolicyError, load_policy


def policy_from(options: dict[str, Any]) -> Policy:
    path = options.get("policy") or settings.VIGIE_POLICY_FILE
    try:
        return load_policy(path)
    except PolicyError as exc:
        raise CommandError(str(exc), returncode=2) from None


class Command(BaseCommand):
    help = "Run the exposure guard, or check its policy file."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        for name, text in (
            ("run", "watch the perimeter until SIGTERM (one guard per installation)"),
            ("check-policy", "validate the policy file and show the firewall it implies"),
        ):
            action = sub.add_parser(name, help=text)
            action.add_argument(
                "--policy", type=Path, default=None, help="default: VIGIE_POLICY_FILE"
            )
        forget = sub.add_parser(
            "forget", help="a retired host: stop expecting its guard to beat (audited)"
        )
        forget.add_argument("host", help="the host name listed on /guard/")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["action"] == "forget":
            self._forget(options["host"])
            return
        policy = policy_from(options)
        if options["action"] == "check-policy":
            self._describe(policy)
            return
        try:
            daemon.run(policy)
        except (nft.NftUnavailable, daemon.GuardAlreadyRunning) as exc:
            raise CommandError(str(exc), returncode=2) from None

    def _forget(self, host: str) -> None:
        from vigie.audit.log import record
        from vigie.guard.models import GuardHost

        deleted, _rows = GuardHost.objects.filter(host=host).delete()
        if not deleted:
            raise CommandError(_("no guard host named %(host)s") % {"host": host}, returncode=2)
        record("guard.host.forgotten", extra={"host": host})
        self.stdout.write(_("forgot guard host %(host)s") % {"host": host})

    def _describe(self, policy: Policy) -> None:
        self.stdout.write(_("Policy %(path)s is valid.") % {"path": policy.path})
        for listener in policy.listeners:
            sources = ", ".join(listener.sources) or "-"
            self.stdout.write(
                f"  {listener.name}: {listener.address}:{listener.port} "
                f"{listener.exposure} {listener.process or '*'} ← {sources}"
            )
        self.stdout.write(
            _("Exposure: %(mode)s (what answering from outside means: see the policy file).")
            % {"mode": policy.exposure_mode}
        )
        self.stdout.write(
            _("Maintenance windows: ports %(ports)s, at most %(cap)s s.")
            % {"ports": ", ".join(map(str, policy.maintenance_ports)), "cap": f"{policy.max_ttl:g}"}
        )
        self.stdout.write(nft.render_table(policy))
