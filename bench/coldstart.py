"""Cold start: `vigie serve` started from nothing to the first document served.

A production-mode installation (SQLite, own keyring, plain loopback HTTP) gets a doctor with
TOTP, a patient in their care and a 200 KB PDF; the doctor logs in once (password + code)
and the session cookie is kept; the server is stopped. Then, `--runs` times: spawn
`vigie serve` (which checks the keys and the database, collects static files only if they
changed, then execs granian), and poll
GET /documents/<id>/content with the cookie until it answers 200 with the exact bytes; the
time from spawn to that response is the figure; stop the server. Sessions live in the
database, so the cookie stays valid across restarts, as it would for a physician.

Processes are cold, the OS page cache is warm (the same files were read by the setup run).

    .venv/bin/python -m bench.coldstart [--runs 5]
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.fetch import _DOCTOR, _SETUP, seed_args, vigie_login
from bench.intake import _vigie
from bench.payload import make_pdf
from bench.processes import free_port, production_env, stop_group, tail, wait_http

_MARK = "@@BENCH-COLDSTART@@"
TIMEOUT = 60.0


def _serve(env: dict[str, str], port: int, log: Path) -> subprocess.Popen[bytes]:
    argv = [sys.executable, "-m", "vigie", "serve", "--host", "127.0.0.1", "--port", str(port)]
    argv += ["--workers", "1", "--threads", "4"]
    with log.open("ab") as out:
        return subprocess.Popen(
            argv,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )


def _first_document(
    port: int, path: str, cookie: str, expected: bytes, server: subprocess.Popen[bytes], log: Path
) -> tuple[float, float]:
    """Poll until the document comes back whole: (when the port first accepted a connection,
    when the document was served), perf_counter times. Refused connections are retried;
    any other answer is an error."""
    deadline = time.monotonic() + TIMEOUT
    listening: float | None = None
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"vigie serve exited {server.returncode}:\n{tail(log)}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            conn.connect()
            if listening is None:
                listening = time.perf_counter()
            conn.request("GET", path, headers={"Cookie": cookie})
            response = conn.getresponse()
            body = response.read()
            conn.close()
        except (ConnectionRefusedError, ConnectionResetError, http.client.RemoteDisconnected):
            time.sleep(0.01)
            continue
        if response.status == 200 and body == expected:
            served = time.perf_counter()
            return listening or served, served
        raise RuntimeError(
            f"{path} answered {response.status} ({len(body)} bytes, "
            f"{'the document' if body == expected else 'not the document'})"
        )
    raise RuntimeError(f"no document within {TIMEOUT:.0f} s:\n{tail(log)}")


def run(runs: int = 5) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="vigie-bench-coldstart-"))
    server: subprocess.Popen[bytes] | None = None
    try:
        # The doctor signs in with a password and a code, as in the fetch stage (production's
        # default would lead a doctor without a passkey to register one first).
        env = {**production_env(work / "home"), "VIGIE_SIGNIN_METHODS": "doctor=password_totp"}
        _vigie(env, "keys", "init")
        _vigie(env, "migrate", "--no-input")
        pdf = make_pdf()
        password = secrets.token_urlsafe(16)
        (work / "doc.pdf").write_bytes(pdf)
        args_file = work / "setup.json"
        args_file.write_text(json.dumps(seed_args(password, work / "doc.pdf")), encoding="utf-8")
        out = _vigie(
            env, "shell", "--no-imports", "-c", _SETUP.format(args=str(args_file), mark=_MARK)
        )
        facts = json.loads(next(x for x in out.splitlines() if x.startswith(_MARK))[len(_MARK) :])
        path = f"/documents/{facts['document']}/content"
        log = work / "serve.log"

        # Once, warm: log in like a person and keep the session cookie.
        port = free_port()
        server = _serve(env, port, log)
        wait_http(port, "/health", server, log)
        cookie = vigie_login(port, _DOCTOR["username"], password, facts["totp_key"])
        stop_group(server)
        server = None

        seconds: list[float] = []
        listen_seconds: list[float] = []
        for _ in range(runs):
            port = free_port()
            started = time.perf_counter()
            server = _serve(env, port, log)
            listening, served = _first_document(port, path, cookie, pdf, server, log)
            seconds.append(served - started)
            listen_seconds.append(listening - started)
            stop_group(server)
            server = None
        return {
            "runs": runs,
            "seconds": [round(s, 3) for s in seconds],
            "median_s": round(statistics.median(seconds), 3),
            "max_s": round(max(seconds), 3),
            "min_s": round(min(seconds), 3),
            # Of which: until granian's socket accepts (the `vigie` command, collectstatic, exec);
            # the rest is the worker loading Django and answering the first request.
            "listening_median_s": round(statistics.median(listen_seconds), 3),
            "document_bytes": len(pdf),
            "server": "vigie serve --workers 1 --threads 4 (production mode, SQLite)",
        }
    finally:
        if server is not None:
            stop_group(server)
        with contextlib.suppress(OSError):
            shutil.rmtree(work, ignore_errors=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="cold start of `vigie serve` to first document")
    parser.add_argument("--runs", type=int, default=5)
    options = parser.parse_args(argv)
    report = run(options.runs)
    print(
        f"cold start to first document: median {report['median_s']} s, "
        f"max {report['max_s']} s over {report['runs']} runs ({report['seconds']})"
    )


if __name__ == "__main__":
    main()
