"""CPU of one REST ingest (`POST /api/v1/documents`, 200 KB PDF), in-process on one thread.

bench/intake.py measures the whole server under wrk, the figure issue 19's targets judge; on a
shared machine it moves by ±10 % between runs. This script answers the narrower question a
change to the ingest path asks: how much CPU one upload costs, and where it goes. It sets Vigie
up exactly as the ingest stage does (production mode, SQLite, one patient, one API key), then
calls Vigie's WSGI application `--documents` times from one thread, serially, with the same
multipart body the stage posts — so every audit batch and every transaction holds one document
(the worst case: under load concurrent requests could share them).

    python -m bench.ingestcpu [--documents 500] [--profile 40]

`--profile N` adds cProfile's N most expensive functions (cumulative; cProfile's own overhead
roughly doubles the times, so read it for proportions).
"""

from __future__ import annotations

import argparse
import io
import shutil
import tempfile
from pathlib import Path
from typing import Any

from bench.cpuchild import measure_in_child
from bench.intake import multipart, setup
from bench.payload import make_pdf

# The upload, run in cpuchild's child (which defines `app` and `args`): the stage's multipart
# body, read once, posted with the API key; anything but 202 stops the run.
_UPLOAD = """
body = open(args["body"], "rb").read()

def operation():
    environ = {
        "REQUEST_METHOD": "POST", "PATH_INFO": "/api/v1/documents", "QUERY_STRING": "",
        "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "80", "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1", "HTTP_HOST": "127.0.0.1",
        "HTTP_AUTHORIZATION": "Bearer " + args["key"],
        "CONTENT_TYPE": "multipart/form-data; boundary=" + args["boundary"],
        "CONTENT_LENGTH": str(len(body)),
        "wsgi.url_scheme": "http", "wsgi.input": io.BytesIO(body), "wsgi.errors": sys.stderr,
    }
    status = []
    answer = b"".join(app(environ, lambda s, h, e=None: status.append(s)))
    if not status[0].startswith("202"):
        raise SystemExit(f"the upload answered {status[0]}: {answer[:300]!r}")
"""


def measure(documents: int, profile: int) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="vigie-bench-ingestcpu-"))
    try:
        env, key = setup(work)
        boundary, body = multipart(make_pdf())
        body_file = work / "body.bin"
        body_file.write_bytes(body)
        args = {"key": key, "boundary": boundary, "body": str(body_file)}
        return measure_in_child(
            _UPLOAD,
            args,
            env,
            count=documents,
            count_key="documents",
            warmup=50,
            profile=profile,
            what="uploads",
            timeout=900,
            # Both orders, as this script always printed: the call tree, then the functions
            # that spend the time themselves.
            sort_orders=("cumulative", "tottime"),
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--documents", type=int, default=500)
    parser.add_argument("--profile", type=int, default=0, help="cProfile's N top functions")
    options = parser.parse_args(argv)
    result = measure(options.documents, options.profile)
    print(
        f"sqlite: {result['documents']} serial uploads, per document:"
        f" {result['cpu_ms']:.3f} ms CPU ({result['request_thread_cpu_ms']:.3f} on the request"
        f" thread, {result['other_threads_cpu_ms']:.3f} in other threads),"
        f" {result['wall_ms']:.3f} ms wall"
    )
    if result.get("profile"):
        print(io.StringIO(result["profile"]).read())


if __name__ == "__main__":
    main()
