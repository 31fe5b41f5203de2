"""`vigie audit verify|checkpoint|watch`: check the chain, sign its head now, or watch it."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

from vigie.audit import checkpoints, watch
from vigie.audit.models import AuditHead
from vigie.audit.verify import verify
from vigie.lib.shutdown import stop_on_signals


class Command(BaseCommand):
    help = "Verify the audit chain against its signed checkpoints, or write a checkpoint now."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        check = sub.add_parser("verify", help="recompute the chain; exit 1 at the first problem")
        check.add_argument(
            "--checkpoints",
            type=Path,
            default=None,
            help="checkpoint file (default: VIGIE_AUDIT_CHECKPOINT_FILE)",
        )
        check.add_argument("--quiet", action="store_true", help="no progress bar")
        check.add_argument(
            "--jobs",
            type=int,
            default=min(os.cpu_count() or 1, 4),
            help="processes verifying seq ranges in parallel (default: CPUs, at most 4)",
        )
        sub.add_parser("checkpoint", help="sign the current head now (e.g. from cron)")
        watch = sub.add_parser("watch", help="apply the anomaly rules to new events, in a loop")
        watch.add_argument("--once", action="store_true", help="one pass over recent events")
        watch.add_argument("--interval", type=float, default=5.0, help="seconds between passes")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["action"] == "checkpoint":
            try:
                written = checkpoints.write_checkpoint(force=True)
            except checkpoints.CheckpointError as exc:
                raise CommandError(str(exc), returncode=2) from None
            if written is None:
                self.stdout.write("nothing new to checkpoint")
            else:
                self.stdout.write(f"checkpoint at seq {written.seq} {written.hash}")
            return
        if options["action"] == "watch":
            self._watch(once=options["once"], interval=options["interval"])
            return
        self._verify(options["checkpoints"], quiet=options["quiet"], jobs=options["jobs"])

    def _verify(self, checkpoint_file: Path | None, *, quiet: bool, jobs: int) -> None:
        console = Console(stderr=True)
        total = AuditHead.objects.filter(pk=1).values_list("seq", flat=True).first() or 0
        started = time.perf_counter()
        progress = Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            console=console,
            disable=quiet,
            transient=True,
        )
        with progress:
            task = progress.add_task("Verifying audit events", total=total or None)
            result = verify(
                checkpoint_file=checkpoint_file,
                progress=lambda done: progress.advance(task, done),
                jobs=jobs,
                max_tail_age=watch.silence_limit(),
            )
        elapsed = time.perf_counter() - started
        first = result.first
        if result.tail_age is None:
            tail = "every event is under a signed checkpoint"
        else:
            tail = (
                f"unanchored tail: {result.tail_events} event(s), the oldest "
                f"{int(result.tail_age.total_seconds())} s old "
                f"(limit {int(watch.silence_limit().total_seconds())} s)"
            )
        if first is None:
            self.stdout.write(
                f"audit log OK: {result.checked} events, {result.checkpoints} signed "
                f"checkpoints, head seq {result.last_seq} ({elapsed:.2f} s); {tail}"
            )
            return
        self.stdout.write(tail)
        self.stdout.write(
            f"audit log NOT OK: first bad seq {first.seq}: {first.kind}: {first.detail}"
        )
        for problem in sorted(result.problems, key=lambda p: p.seq)[1:10]:
            self.stdout.write(f"  also {problem}")
        raise CommandError(f"audit verification failed at seq {first.seq}", returncode=1)

    def _watch(self, *, once: bool, interval: float) -> None:
        """Scan and anchor until SIGTERM/SIGINT (see vigie.audit.watch)."""
        stop = threading.Event()
        with stop_on_signals(stop.set):
            position = watch.run(stop, interval=interval, once=once)
        self.stdout.write(f"watch stopped at seq {position}")
