"""`vigie check`: the installation's self-check (see vigie/ops/checks.py).

It replaces Django's `check` command. Given any of Django's own options (`--deploy`, `--tag`,
`--list-tags`, `--fail-level`, `--database`, app labels), it is Django's command, unchanged:
scripts and Django's test runner keep working. Without them it runs Django's system checks
(with the deployment ones) and every installation check, prints one line per finding (the
fix under each problem), or JSON with `--json`, and exits 1 if anything failed.
"""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import CommandError, CommandParser
from django.core.management.commands import check as django_check
from django.utils import translation

from vigie.ops import check_base, checks

_MARKS = {check_base.OK: "ok  ", check_base.WARNING: "WARN", check_base.FAILURE: "FAIL"}


class Command(django_check.Command):
    help = (
        "Check this installation: keys, settings, TLS, database, exposure guard, backups, "
        "audit checkpoints (and Django's --deploy checks). Exit 1 on any failure. "
        "With Django's own options (--deploy, --tag...), run Django's checks only."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        super().add_arguments(parser)
        # None, not "ERROR": an explicit --fail-level means "Django's command, please".
        parser.set_defaults(fail_level=None)
        parser.add_argument("--json", action="store_true", help="print the findings as JSON")
        parser.add_argument(
            "--behind-proxy",
            metavar="ADDR[,ADDR]",
            action="append",
            default=[],
            help="the reverse proxies that terminate TLS (as given to `vigie serve`)",
        )

    def handle(self, *app_labels: Any, **options: Any) -> None:
        if (
            app_labels
            or options["deploy"]
            or options["tags"]
            or options["list_tags"]
            or options["fail_level"] is not None
            or options["databases"]
        ):
            options["fail_level"] = options["fail_level"] or "ERROR"
            super().handle(*app_labels, **options)
            return
        try:
            proxies = checks.valid_proxies(options["behind_proxy"])
        except ValueError as exc:
            raise CommandError(f"--behind-proxy: {exc}", returncode=2) from None
        with translation.override("en"):
            findings = checks.run_all(check_base.Context(behind_proxy=proxies))
        failed = [f for f in findings if f.status == check_base.FAILURE]
        if options["json"]:
            report = {"ok": not failed, "findings": [f.as_dict() for f in findings]}
            self.stdout.write(json.dumps(report, indent=2, ensure_ascii=False))
        else:
            self._print(findings)
        if failed:
            raise CommandError(
                f"{len(failed)} check(s) failed: {', '.join(f.id for f in failed)}", returncode=1
            )

    def _print(self, findings: list[check_base.Finding]) -> None:
        width = max(len(f.id) for f in findings)
        styles = {
            check_base.OK: self.style.SUCCESS,
            check_base.WARNING: self.style.WARNING,
            check_base.FAILURE: self.style.ERROR,
        }
        for finding in findings:
            mark = styles[finding.status](_MARKS[finding.status])
            self.stdout.write(f"{mark}  {finding.id:<{width}}  {finding.message}")
            if finding.fix and finding.status != check_base.OK:
                self.stdout.write(f"      {'':<{width}}  fix: {finding.fix}")
        counts = {s: sum(f.status == s for f in findings) for s in _MARKS}
        self.stdout.write(
            f"\n{counts[check_base.FAILURE]} failure(s), {counts[check_base.WARNING]} warning(s), "
            f"{counts[check_base.OK]} ok"
        )
