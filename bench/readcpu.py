"""CPU of one authorised, audited read, measured in-process on one thread: where it goes.

wrk against `vigie serve` (bench/fetch.py) measures the whole server under load, the figure the
targets are judged by; on a machine shared with other work it moves by ±10 % between runs.
This script answers the narrower question a change to the read path asks: how much CPU does
one read cost, and how much of it is the request thread (session, user, decision, event,
decryption, Django) versus the audit appender (the batch's statements and its commit, whose
fsync is charged to the thread that calls it). It sets up Vigie exactly as the fetch stage
does (production mode, a doctor signed in with password + TOTP, a 200 KB PDF), stops the
server, then calls Vigie's WSGI application `--reads` times from one thread, serially, with
that session's cookie — so every audit batch holds one event (the worst case for the
appender; under load batches are larger).

    python -m bench.readcpu [--reads 2000] [--postgres] [--profile 40]

`--profile N` adds cProfile's N most expensive functions (cumulative; cProfile's own overhead
roughly doubles the times, so read it for proportions).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import shutil
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from bench.cpuchild import measure_in_child
from bench.fetch import check_fetch, postgres_database, start_vigie, vigie_env
from bench.payload import make_pdf
from bench.processes import Processes

# The read, run in cpuchild's child (which defines `app` and `args`): one GET of the
# document with the signed-in doctor's cookie, checked whole.
_READ = """
def operation():
    environ = {
        "REQUEST_METHOD": "GET", "PATH_INFO": args["path"], "QUERY_STRING": "",
        "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "80", "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1", "HTTP_HOST": args["host"], "HTTP_COOKIE": args["cookie"],
        "wsgi.url_scheme": "http", "wsgi.input": io.BytesIO(), "wsgi.errors": sys.stderr,
    }
    status = []
    body = app(environ, lambda s, h, e=None: status.append(s))
    size = sum(len(chunk) for chunk in body)
    body.close()
    if not status[0].startswith("200") or size != args["size"]:
        raise SystemExit(f"the read answered {status[0]} with {size} bytes")
"""


def measure(reads: int, postgres: bool, profile: int) -> dict[str, Any]:
    procs = Processes()
    work = Path(tempfile.mkdtemp(prefix="vigie-bench-readcpu-"))
    stack = contextlib.ExitStack()
    try:
        database_url = stack.enter_context(postgres_database())[0] if postgres else None
        pdf = make_pdf()
        url, cookie, _server = start_vigie(
            work, procs, pdf, 1, 2, name="readcpu", database_url=database_url
        )
        check_fetch(url, f"Cookie: {cookie}", pdf)
        # The server only signed the doctor in; the reads run in this script's child.
        procs.stop_all()
        parts = urlsplit(url)
        args = {"path": parts.path, "host": parts.netloc, "cookie": cookie, "size": len(pdf)}
        result = measure_in_child(
            _READ,
            args,
            vigie_env(work, "readcpu", database_url),
            count=reads,
            count_key="reads",
            warmup=200,
            profile=profile,
            what="reads",
            timeout=600,
        )
        result["database"] = "postgresql" if postgres else "sqlite"
        return result
    finally:
        procs.stop_all()
        stack.close()
        shutil.rmtree(work, ignore_errors=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--reads", type=int, default=2000)
    parser.add_argument("--postgres", action="store_true", help="PostgreSQL instead of SQLite")
    parser.add_argument("--profile", type=int, default=0, help="cProfile's N top functions")
    options = parser.parse_args(argv)
    result = measure(options.reads, options.postgres, options.profile)
    print(
        f"{result['database']}: {result['reads']} serial reads, per read:"
        f" {result['cpu_ms']:.3f} ms CPU ({result['request_thread_cpu_ms']:.3f} on the request"
        f" thread, {result['other_threads_cpu_ms']:.3f} in the audit appender and other"
        f" threads), {result['wall_ms']:.3f} ms wall"
    )
    if result.get("profile"):
        print(io.StringIO(result["profile"]).read())


if __name__ == "__main__":
    main()
