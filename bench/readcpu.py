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
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from bench.fetch import check_fetch, postgres_database, start_vigie, vigie_env
from bench.payload import make_pdf
from bench.processes import Processes

_MARK = "@@READCPU@@"

# Run in the child, with Vigie's environment: Django is configured by it alone.
_INNER = """
import cProfile, io, json, os, pstats, sys, time
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "vigie.settings")
import django
django.setup()
from django.core.wsgi import get_wsgi_application
args = json.loads(sys.argv[1])
app = get_wsgi_application()

def read():
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

for _ in range(min(200, args["reads"])):
    read()
wall, cpu, own = time.perf_counter(), time.process_time(), time.thread_time()
for _ in range(args["reads"]):
    read()
n = args["reads"]
result = {
    "reads": n,
    "wall_ms": 1000 * (time.perf_counter() - wall) / n,
    "cpu_ms": 1000 * (time.process_time() - cpu) / n,
    "request_thread_cpu_ms": 1000 * (time.thread_time() - own) / n,
}
result["other_threads_cpu_ms"] = result["cpu_ms"] - result["request_thread_cpu_ms"]
if args["profile"]:
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(n):
        read()
    profiler.disable()
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(args["profile"])
    result["profile"] = out.getvalue()
print(args["mark"] + json.dumps(result))
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
        args = {
            "path": parts.path,
            "host": parts.netloc,
            "cookie": cookie,
            "size": len(pdf),
            "reads": reads,
            "profile": profile,
            "mark": _MARK,
        }
        done = subprocess.run(
            [sys.executable, "-c", _INNER, json.dumps(args)],
            env=vigie_env(work, "readcpu", database_url),
            capture_output=True,
            text=True,
            check=False,
            timeout=600,
        )
        lines = [x for x in done.stdout.splitlines() if x.startswith(_MARK)]
        if done.returncode != 0 or not lines:
            raise SystemExit(f"the reads failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
        result: dict[str, Any] = json.loads(lines[-1][len(_MARK) :])
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
