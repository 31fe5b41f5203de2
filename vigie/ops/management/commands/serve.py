"""`vigie serve`: run Vigie under granian. Binds 127.0.0.1:8000 unless told otherwise."""

from __future__ import annotations

import os
import sys
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from vigie.lib.proxy import parse_networks
from vigie.ops import static_stamp

# Sized for the small machines Vigie runs on (2 cores measured): 8 threads per worker beat
# 4 by 15-25 % there, because a read spends much of its time waiting (the audit commit's
# fsync), not computing. More only adds GIL contention.
DEFAULT_THREADS = 8
# Requests a worker takes in at once, per blocking thread. granian's default (backlog /
# workers = 512) accepted a 256-connection burst whole and queued it inside the worker,
# where each request's clock runs while it waits behind hundreds of others for a thread;
# with a bound, the surplus waits in the kernel's accept queue and each worker keeps only
# what its threads can soon serve.
BACKPRESSURE_PER_THREAD = 2


def granian_argv(
    *,
    host: str,
    port: int,
    workers: int,
    threads: int,
    cert: str | None,
    key: str | None,
    backpressure: int | None = None,
) -> list[str]:
    argv = [
        sys.executable,
        "-m",
        "granian",
        "--interface",
        "wsgi",
        "--host",
        host,
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--blocking-threads",
        str(threads),
        "--backpressure",
        str(backpressure or threads * BACKPRESSURE_PER_THREAD),
        "--no-access-log",
    ]
    # No granian static route: it answered /static/ (200, 404, traversal) without Vigie's
    # headers. Django serves STATIC_ROOT instead, through the middleware that sets them.
    if cert and key:
        argv += ["--ssl-certificate", cert, "--ssl-keyfile", key]
    argv.append("vigie.wsgi:application")
    return argv


class Command(BaseCommand):
    help = "Serve Vigie with granian (WSGI)."
    # Run without Django's applications loaded (see vigie/cli.py): the system checks run in
    # each granian worker instead, before it serves (vigie/wsgi.py).
    requires_system_checks = ()

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument("--workers", type=int, default=max(1, os.cpu_count() or 1))
        parser.add_argument("--threads", type=int, default=DEFAULT_THREADS)
        parser.add_argument(
            "--backpressure",
            type=int,
            default=None,
            help=f"requests a worker takes in at once (default: {BACKPRESSURE_PER_THREAD} x threads)",
        )
        # Defaults from the settings (VIGIE_TLS_CERT, VIGIE_TLS_KEY), which `vigie check` reads.
        parser.add_argument("--tls-cert", default=settings.VIGIE_TLS_CERT)
        parser.add_argument("--tls-key", default=settings.VIGIE_TLS_KEY)
        parser.add_argument(
            "--behind-proxy",
            metavar="ADDR[,ADDR]",
            help="trust X-Forwarded-For/-Proto only from these proxy addresses or networks",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if bool(options["tls_cert"]) != bool(options["tls_key"]):
            raise CommandError("--tls-cert and --tls-key go together", returncode=2)
        if options["behind_proxy"]:
            proxies = [p for p in options["behind_proxy"].split(",") if p.strip()]
            try:
                parse_networks(proxies)
            except ValueError as exc:
                raise CommandError(f"--behind-proxy: {exc}", returncode=2) from None
            # The workers read it from the environment when they load the settings.
            os.environ["VIGIE_TRUSTED_PROXIES"] = ",".join(proxies)
        # Static assets are copied (not linked) to STATIC_ROOT, which vigie/urls.py serves;
        # running it here keeps CSS and the admin's assets in step with the installed code.
        # An installed wheel carries them already collected inside the package (build_hooks.py).
        # A stamp lets an unchanged installation skip it (and the loading of every app).
        if not settings.VIGIE_STATIC_PACKAGED and not static_stamp.in_step():
            static_stamp.collect()
        argv = granian_argv(
            host=options["host"],
            port=options["port"],
            workers=options["workers"],
            threads=options["threads"],
            cert=options["tls_cert"],
            key=options["tls_key"],
            backpressure=options["backpressure"],
        )
        self.stderr.write(
            f"Vigie ({settings.VIGIE_MODE}) on http://{options['host']}:{options['port']}/"
        )
        sys.stdout.flush()
        sys.stderr.flush()
        # exec: granian becomes this process, so signals from systemd or Ctrl-C reach it.
        os.execv(sys.executable, argv)  # noqa: S606 - fixed argv built above, no shell
