"""`vigie mllpsender add NAME --source SYSTEM (--cert FILE | --loopback) | list | revoke NAME`.

Each lab that sends HL7 v2 over MLLP is one sender with one source system. `--cert` maps
the lab's TLS client certificate (signed by the clinic's client CA) to it; `--loopback`
makes the sender a plain listener on 127.0.0.1 may speak for (`vigie intake mllp
--sender NAME`: a local integration engine, or stunnel). Errors end with exit code 2.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import CommandError, CommandParser
from django.utils.translation import gettext as _

from vigie.intake.management.commands._credentials import CredentialCommand
from vigie.intake.models import MllpSender
from vigie.intake.senders import SenderError, add_sender, read_certificate, revoke_sender
from vigie.lib.cli import command_operator


class Command(CredentialCommand):
    help = "Manage the senders of HL7 v2 over MLLP: add (by client certificate), list, revoke."
    model = MllpSender
    revoke_one = staticmethod(revoke_sender)

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        add = sub.add_parser("add", help="add a sender")
        add.add_argument("name", help="the lab or system (unique)")
        add.add_argument(
            "--source",
            required=True,
            help="its source system: shown as the origin of its documents, and the only "
            "assigning authority whose patient numbers it may send",
        )
        how = add.add_mutually_exclusive_group(required=True)
        how.add_argument(
            "--cert", type=Path, help="its TLS client certificate (PEM or DER), signed by the CA"
        )
        how.add_argument(
            "--loopback",
            action="store_true",
            help="no certificate: the sender of a plain listener on loopback (--sender NAME)",
        )
        self.add_list_and_revoke(
            sub, list_help="list senders", revoke_help="revoke a sender by name"
        )

    def make(self, action: str, options: dict[str, Any]) -> None:
        self._add(options["name"], options["source"], options["cert"])

    def not_found(self, name: str) -> str:
        return _("no MLLP sender named %(name)r") % {"name": name}

    def _add(self, name: str, source: str, cert: Path | None) -> None:
        try:
            certificate = read_certificate(cert) if cert is not None else None
            sender = add_sender(
                name, source_system=source, certificate=certificate, by=command_operator()
            )
        except SenderError as exc:
            raise CommandError(str(exc), returncode=2) from None
        if sender.fingerprint:
            self.stdout.write(
                _("MLLP sender %(name)s added (source %(source)s), certificate %(subject)s, "
                  "SHA-256 %(fingerprint)s")
                % {"name": sender.name, "source": sender.source_system,
                   "subject": sender.subject, "fingerprint": sender.fingerprint}
            )  # fmt: skip
        else:
            self.stdout.write(
                _("MLLP sender %(name)s added (source %(source)s), for a loopback listener")
                % {"name": sender.name, "source": sender.source_system}
            )

    def _list(self) -> None:
        senders = list(MllpSender.objects.order_by("name"))
        if not senders:
            self.stdout.write(_("no MLLP sender"))
            return
        for sender in senders:
            state = self.state(sender)
            expires = sender.not_after.date().isoformat() if sender.not_after else "-"
            self.stdout.write(
                f"{sender.name}\t{sender.source_system}\t{sender.fingerprint or 'loopback'}\t"
                f"{expires}\t{state}"
            )
