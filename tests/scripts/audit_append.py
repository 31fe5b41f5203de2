"""Append audit events through `record()` from several threads; print `ACK <seq>` per return.

Usage: audit_append.py COUNT THREADS [TAG]. COUNT=0 appends until killed. Every ACK line is a
promise that the event is durable: the crash drill checks each one after a SIGKILL.
"""

from __future__ import annotations

import itertools
import os
import sys
import threading

import django


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "vigie.settings")
    from vigie.startup import preflight

    preflight()
    django.setup()
    from vigie.audit.log import record

    count, threads = int(sys.argv[1]), int(sys.argv[2])
    tag = sys.argv[3] if len(sys.argv) > 3 else str(os.getpid())
    out = threading.Lock()

    def work(worker: int) -> None:
        numbers = range(count // threads) if count else itertools.count()
        for n in numbers:
            event = record(
                "document.read",
                outcome="success",
                reason="system test",
                extra={"tag": tag, "worker": worker, "n": n},
            )
            with out:
                sys.stdout.write(f"ACK {event.seq} {event.hash}\n")
                sys.stdout.flush()

    pool = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    sys.stdout.write("DONE\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
