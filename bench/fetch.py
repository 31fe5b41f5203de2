"""Fetch: one 200 KB PDF, served by nginx, Orthanc and Vigie (SQLite, then PostgreSQL).

nginx is the incident's baseline: a static file behind a password (auth_basic). Orthanc is a
real medical server: the same PDF wrapped as a DICOM Encapsulated PDF instance, fetched with
`GET /instances/{id}/file` under its HTTP basic authentication (bench/orthanc.py). Vigie pays
for what neither does: a server-side session, the access decision, a durable audit event
before the first byte, and decryption. Vigie runs in production mode on plain loopback HTTP
(VIGIE_TLS=false), once on SQLite and once on PostgreSQL (a fresh database
`vigie_bench_<random>`, dropped afterwards); a doctor with a care relationship logs in with
password + TOTP, and wrk replays the session cookie on /documents/<id>/content.

Every server is checked by hand first (200 and exactly the payload's bytes, so wrk never times
a login page or a 401), then wrk (2 threads, 10 s timeout) runs `--duration` seconds per
server and connection count (32 and 256 by default), in `--rounds` interleaved rounds: inside
a round every server takes its turn, so drift on a shared machine hits all alike. Figures are
medians over rounds. Targets (issue 19, bench/targets.py): at 32 connections Vigie ≥ 0.1 x
nginx, ≥ 0.2 x Orthanc, p99 ≤ 50 ms, ≤ 1.5 ms of server CPU per read, PostgreSQL ≥ 0.8 x
SQLite; at 256 connections p99 ≤ 1 s.

`--profile`: py-spy on a granian worker of Vigie (SQLite) under 32 connections,
bench/results/fetch-flame.svg and the hottest frames. `--noaudit` adds the benchmark-only
build without the read audit (what the audit costs).

Run with `make bench` (bench.run calls `run_fetch`) or
`python -m bench.fetch [--duration 5 --rounds 3 --connections 32,256 --profile]`.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import hashlib
import http.client
import json
import os
import platform
import re
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urljoin, urlsplit, urlunsplit

from bench import targets as goal
from bench.orthanc import HTTP_THREADS, start_orthanc
from bench.payload import DOC_SIZE, make_pdf
from bench.processes import (
    Processes,
    find,
    free_port,
    stop_group,
    tree_cpu_seconds,
    wait_http,
)

RESULTS = Path(__file__).parent / "results"
CONNECTIONS = 32
THREADS = 2
_MARK = "@@BENCH@@"
_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0}


def ensure_debian_packages() -> None:
    missing = [pkg for pkg, cmd in (("nginx-light", "nginx"), ("wrk", "wrk")) if not find(cmd)]
    if not missing:
        return
    print(f"installing {' '.join(missing)} from Debian's packages")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(["apt-get", "install", "-y", "-qq", *missing], check=True, env=env)


# --- nginx ----------------------------------------------------------------------------------


def nginx_conf(root: Path, port: int, workers: int) -> str:
    return f"""
daemon off;
master_process on;
worker_processes {workers};
pid {root}/nginx.pid;
error_log {root}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {root}/scratch/body;
    proxy_temp_path {root}/scratch/proxy;
    fastcgi_temp_path {root}/scratch/fastcgi;
    uwsgi_temp_path {root}/scratch/uwsgi;
    scgi_temp_path {root}/scratch/scgi;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 1000000;
    types {{ application/pdf pdf; }}
    server {{
        listen 127.0.0.1:{port};
        root {root}/www;
        location / {{
            auth_basic "records";
            auth_basic_user_file {root}/htpasswd;
        }}
    }}
}}
"""


def htpasswd_line(user: str, password: str, scheme: str = "apr1") -> str:
    # apr1 is what `htpasswd` writes by default (1,000 rounds of MD5 per request); {SHA} is
    # nginx's cheapest hashed scheme, the fastest baseline nginx can give.
    if scheme == "apr1" and find("openssl"):
        hashed = subprocess.run(
            ["openssl", "passwd", "-apr1", "-stdin"],
            input=password,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    else:
        digest = hashlib.sha1(password.encode(), usedforsecurity=False).digest()
        hashed = "{SHA}" + base64.b64encode(digest).decode()
    return f"{user}:{hashed}\n"


def start_nginx(
    work: Path, procs: Processes, pdf: bytes, workers: int, scheme: str
) -> tuple[str, str, subprocess.Popen[bytes]]:
    """(URL, Authorization header, master process) of the PDF served by nginx."""
    root = work / "nginx"
    for sub in ("www", "scratch", "logs"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    (root / "www" / "result.pdf").write_bytes(pdf)
    password = secrets.token_urlsafe(16)
    (root / "htpasswd").write_text(htpasswd_line("doctor", password, scheme), encoding="utf-8")
    # nginx's workers drop to an unprivileged user when started as root: let them read the
    # document and the password file (a throwaway password for this run only).
    for path in (work, root, root / "www"):
        path.chmod(0o711 if path == work else 0o755)
    for path in (root / "www" / "result.pdf", root / "htpasswd"):
        path.chmod(0o644)
    port = free_port()
    (root / "nginx.conf").write_text(nginx_conf(root, port, workers), encoding="utf-8")
    nginx = find("nginx")
    assert nginx is not None
    log = root / "nginx.log"
    process = procs.start([nginx, "-p", str(root), "-c", str(root / "nginx.conf")], log)
    wait_http(port, "/", process, log)
    auth = "Basic " + base64.b64encode(f"doctor:{password}".encode()).decode()
    return f"http://127.0.0.1:{port}/result.pdf", auth, process


# --- Vigie ----------------------------------------------------------------------------------

# The doctor who reads, their patient and the document (see
# vigie.records.testing.seed_reading_doctor), made in `vigie shell` against the installation.
_DOCTOR = {
    "username": "bench.doctor",
    "first_name": "Banc",
    "last_name": "Essai",
    "ipp": "BENCH-0001",
    "family_name": "BANC",
    "given_names": "Essai",
    "source_system": "bench",
}


def seed_args(password: str, pdf: Path) -> dict[str, str]:
    """The arguments `_SETUP` passes to `seed_reading_doctor` (through a JSON file): the bench's
    doctor, with this run's password and document."""
    return {**_DOCTOR, "password": password, "pdf": str(pdf)}


_SETUP = (
    "import json\n"
    "from vigie.records.testing import seed_reading_doctor as seed\n"
    "print({mark!r} + json.dumps(seed(**json.loads(open({args!r}).read()))))\n"
)


def totp_now(key_hex: str, offset: int = 0) -> str:
    from django_otp.oath import hotp

    counter = int(time.time()) // 30 + offset
    return f"{hotp(bytes.fromhex(key_hex), counter, 6):06d}"


class _Form(HTMLParser):
    """The first POST form of a page with `wanted` fields: its action and its named inputs."""

    def __init__(self, wanted: set[str]) -> None:
        super().__init__()
        self.wanted = wanted
        self.action: str | None = None
        self.fields: dict[str, str] = {}
        self.names: list[str] = []
        self._inside = False
        self._done = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attr = {k: v or "" for k, v in attrs}
        if tag == "form" and not self._done and attr.get("method", "").lower() == "post":
            self._inside = True
            self.action = attr.get("action", "")
        elif self._inside and tag in {"input", "textarea", "select"} and attr.get("name"):
            self.names.append(attr["name"])
            self.fields[attr["name"]] = attr.get("value", "")

    def handle_endtag(self, tag: str) -> None:
        if tag == "form" and self._inside:
            self._inside = False
            if self.wanted <= set(self.names):
                self._done = True
            else:
                self.action, self.fields, self.names = None, {}, []


class Client:
    """Just enough of a browser: cookies, forms, redirects, over one loopback connection."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.cookies: dict[str, str] = {}

    def request(
        self, method: str, path: str, body: dict[str, str] | None = None
    ) -> tuple[int, dict[str, str], bytes, str]:
        for _ in range(10):
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
            headers = {"Cookie": "; ".join(f"{k}={v}" for k, v in self.cookies.items())}
            data = None
            if body is not None:
                data = urlencode(body)
                headers["Content-Type"] = "application/x-www-form-urlencoded"
                headers["Origin"] = f"http://127.0.0.1:{self.port}"
                headers["Referer"] = f"http://127.0.0.1:{self.port}{path}"
            conn.request(method, path, body=data, headers=headers)
            response = conn.getresponse()
            content = response.read()
            conn.close()
            for name, value in response.getheaders():
                if name.lower() == "set-cookie":
                    key, _, rest = value.partition("=")
                    self.cookies[key.strip()] = rest.split(";")[0]
            if response.status in {301, 302, 303} and response.getheader("Location"):
                path = urlsplit(urljoin(path, response.getheader("Location") or "")).path
                method, body = "GET", None
                continue
            return response.status, dict(response.getheaders()), content, path
        raise SystemExit("too many redirects")

    def submit(self, path: str, page: bytes, values: dict[str, str]) -> tuple[int, bytes, str]:
        form = _Form(set(values))
        form.feed(page.decode("utf-8", "replace"))
        fields = dict(form.fields)
        for name, value in values.items():
            matches = [n for n in form.names if n == name or n.endswith(f"-{name}")]
            if not matches:
                raise SystemExit(f"no field {name!r} in the form at {path}: {form.names}")
            fields[matches[0]] = value
        status, _, content, where = self.request("POST", urljoin(path, form.action or path), fields)
        return status, content, where


def vigie_login(port: int, username: str, password: str, totp_key: str) -> str:
    """Log in like a person (password, then the authenticator's code); return the cookie."""
    client = Client(port)
    _, _, page, where = client.request("GET", "/")
    _, page, where = client.submit(where, page, {"username": username, "password": password})
    for offset in (0, 1):
        _, page, where = client.submit(where, page, {"code": totp_now(totp_key, offset)})
        if not where.startswith("/accounts/"):
            break
    else:
        raise SystemExit(f"the second factor was refused (still at {where})")
    return "; ".join(f"{k}={v}" for k, v in client.cookies.items())


def vigie_env(work: Path, name: str, database_url: str | None = None) -> dict[str, str]:
    """The environment of the Vigie named `name` under `work`: production mode, plain HTTP
    on loopback, a throwaway home and keys folder; PostgreSQL if `database_url` is given."""
    home = work / f"{name}-home"
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("VIGIE_") and k not in {"DATABASE_URL", "DJANGO_SETTINGS_MODULE"}
    }
    env.update(
        VIGIE_HOME=str(home),
        # Beside the throwaway home: production's default is the host's /etc/vigie/keys.
        VIGIE_KEYS_DIR=str(home.with_name(f"{home.name}-keys")),
        VIGIE_MODE="production",
        VIGIE_TLS="false",
        VIGIE_SSL_REDIRECT="false",
        # The bench doctor signs in with a password and a code, as a clinic that accepts
        # codes allows (production's default would lead it to register a passkey first).
        VIGIE_SIGNIN_METHODS="doctor=password_totp",
        PYTHONUNBUFFERED="1",
    )
    if database_url:
        env["DATABASE_URL"] = database_url
    return env


def start_vigie(
    work: Path,
    procs: Processes,
    pdf: bytes,
    workers: int,
    threads: int,
    *,
    name: str = "vigie",
    wsgi_app: str | None = None,
    database_url: str | None = None,
) -> tuple[str, str, subprocess.Popen[bytes]]:
    """(URL, Cookie header, server process) of the PDF served by Vigie in production mode.

    `wsgi_app` runs granian on another WSGI entry (the benchmark-only no-audit build) instead
    of `vigie serve`; everything else — home, keys, users, login — is set up the same way.
    `database_url` (postgres://...) selects PostgreSQL instead of the embedded SQLite.
    """
    env = vigie_env(work, name, database_url)
    vigie = [sys.executable, "-m", "vigie"]

    def run(*args: str) -> str:
        result = subprocess.run(
            [*vigie, *args], env=env, capture_output=True, text=True, check=False, timeout=300
        )
        if result.returncode != 0:
            raise SystemExit(f"vigie {args[0]} failed:\n{result.stdout}\n{result.stderr}")
        return result.stdout

    run("keys", "init")
    run("migrate", "--no-input")
    password = secrets.token_urlsafe(16)
    (work / "pdf.pdf").write_bytes(pdf)
    args_file = work / f"{name}-setup.json"
    args_file.write_text(
        json.dumps(seed_args(password, work / "pdf.pdf")),
        encoding="utf-8",
    )
    out = run("shell", "--no-imports", "-c", _SETUP.format(args=str(args_file), mark=_MARK))
    facts = json.loads(next(x for x in out.splitlines() if x.startswith(_MARK))[len(_MARK) :])
    port = free_port()
    log = work / f"{name}.log"
    if wsgi_app is None:
        argv = [*vigie, "serve", "--host", "127.0.0.1", "--port", str(port)]
        argv += ["--workers", str(workers), "--threads", str(threads)]
    else:
        env["PYTHONPATH"] = str(Path(__file__).resolve().parent.parent)
        argv = [sys.executable, "-m", "granian", "--interface", "wsgi", "--host", "127.0.0.1"]
        argv += ["--port", str(port), "--workers", str(workers)]
        argv += ["--blocking-threads", str(threads), "--no-access-log", wsgi_app]
    process = procs.start(argv, log, env=env)
    wait_http(port, "/health", process, log)
    cookie = vigie_login(port, _DOCTOR["username"], password, facts["totp_key"])
    return f"http://127.0.0.1:{port}/documents/{facts['document']}/content", cookie, process


# --- wrk ------------------------------------------------------------------------------------


@dataclass
class Run:
    name: str
    connections: int
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    bytes_per_request: float
    errors: str
    requests: int = 0
    # Server CPU (its whole process tree, user + system) per request served: steadier than
    # req/s on a shared machine, and what a faster path must lower. None when not measured.
    cpu_ms_per_request: float | None = None


def _ms(value: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s)", value)
    if not match:
        raise ValueError(f"unexpected wrk latency {value!r}")
    return float(match.group(1)) * _UNITS[match.group(2)]


def _bytes(value: str) -> float:
    match = re.fullmatch(r"([\d.]+)([KMG]?B)", value)
    if not match:
        raise ValueError(f"unexpected wrk size {value!r}")
    scale = {"B": 1, "KB": 1024, "MB": 1024**2, "GB": 1024**3}[match.group(2)]
    return float(match.group(1)) * scale


def parse_wrk(name: str, output: str, connections: int = CONNECTIONS) -> Run:
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))  # type: ignore[union-attr]
    p50 = _ms(re.search(r"\s50%\s+(\S+)", output).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"\s99%\s+(\S+)", output).group(1))  # type: ignore[union-attr]
    transfer = _bytes(re.search(r"Transfer/sec:\s+(\S+)", output).group(1))  # type: ignore[union-attr]
    errors = "; ".join(
        line.strip() for line in output.splitlines() if "Non-2xx" in line or "Socket errors" in line
    )
    served = re.search(r"(\d+) requests in ", output)
    requests = int(served.group(1)) if served else 0
    return Run(name, connections, rps, p50, p99, transfer / rps if rps else 0.0, errors, requests)


def with_cpu(run: Run, cpu_seconds: float) -> Run:
    """`run` with the server's CPU per request, from its CPU seconds over the run."""
    if run.requests:
        run.cpu_ms_per_request = round(1000 * cpu_seconds / run.requests, 3)
    return run


def cpu_text(run: Run) -> str:
    if run.cpu_ms_per_request is None:
        return ""
    return f"  {run.cpu_ms_per_request:6.3f} ms CPU/req"


def wrk_argv(connections: int, duration: int) -> list[str]:
    # A generous timeout: a slow answer counts in the latency figures instead of vanishing
    # into wrk's "timeout" error count (its default is 2 s).
    threads = min(THREADS, connections)
    return ["wrk", f"-t{threads}", f"-c{connections}", f"-d{duration}s", "--timeout", "10s"]


def wrk(
    name: str,
    url: str,
    header: str,
    duration: int,
    connections: int = CONNECTIONS,
    server_pid: int | None = None,
) -> Run:
    """One wrk run; with `server_pid`, also the server tree's CPU per request served."""
    argv = [*wrk_argv(connections, duration), "--latency", "-H", header, url]
    before = tree_cpu_seconds(server_pid) if server_pid else 0.0
    result = subprocess.run(argv, capture_output=True, text=True, check=True, timeout=duration + 60)
    run = parse_wrk(name, result.stdout, connections)
    if server_pid:
        with_cpu(run, tree_cpu_seconds(server_pid) - before)
    print(
        f"  {name:<17} c={connections:<4} {run.requests_per_s:>9,.0f} req/s"
        f"  p50 {run.p50_ms:8.2f} ms  p99 {run.p99_ms:8.2f} ms"
        f"  {run.bytes_per_request / 1024:6.1f} KiB/req{cpu_text(run)}"
        + (f"  [{run.errors}]" if run.errors else "")
    )
    return run


def check_fetch(url: str, header: str, expected: bytes | None = None) -> None:
    """One request by hand: a 200 with exactly the payload, not a login page or a 401 that wrk
    would count as fast. Without `expected`, any 200 KB PDF will do."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection("127.0.0.1", parts.port, timeout=10)
    key, _, value = header.partition(": ")
    conn.request("GET", parts.path, headers={key: value})
    response = conn.getresponse()
    body = response.read()
    conn.close()
    if expected is not None:
        good = response.status == 200 and body == expected
    else:
        good = response.status == 200 and body.startswith(b"%PDF") and len(body) == DOC_SIZE
    if not good:
        raise SystemExit(f"{url} answered {response.status} with {len(body)} bytes {body[:60]!r}")


# --- profile --------------------------------------------------------------------------------


def ensure_py_spy() -> str | None:
    py_spy = Path(sys.executable).with_name("py-spy")
    if not py_spy.exists():
        result = subprocess.run(
            [sys.executable, "-m", "pip", "install", "--quiet", "py-spy"],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            print(f"  py-spy unavailable: {result.stderr.strip()[-200:]}")
            return None
    return str(py_spy) if py_spy.exists() else None


def worker_pids(parent: int) -> list[int]:
    """Descendants of `parent` (granian's workers are its child processes)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found: list[int] = []
    todo = [parent]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found or [parent]


def hottest(collapsed: str, top: int = 5) -> dict[str, list[dict[str, Any]]]:
    """From py-spy's raw (collapsed) stacks: the functions most often on top of the stack
    (self time), and the same samples charged to the innermost Vigie function on the stack
    ("which of our calls spends it": a query in a middleware, a wait for the audit commit)."""
    own: Counter[str] = Counter()
    charged: Counter[str] = Counter()
    total = 0
    for line in collapsed.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        samples = int(count)
        total += samples
        # Per function, not per line: "execute (django/db/.../base.py)".
        frames = [re.sub(r":\d+\)$", ")", frame) for frame in stack.split(";")]
        own[frames[-1]] += samples
        ours = [frame for frame in frames if "(vigie/" in frame]
        caller = ours[-1] if ours else "(outside Vigie code)"
        charged[f"{caller} -> {frames[-1]}"] += samples

    def share(counter: Counter[str]) -> list[dict[str, Any]]:
        return [
            {"frame": frame, "percent": round(100 * n / max(total, 1), 1)}
            for frame, n in counter.most_common(top)
        ]

    return {"self": share(own), "by_vigie_caller": share(charged)}


def profile_under_load(
    name: str,
    load_argv: list[str],
    server: subprocess.Popen[bytes],
    duration: int,
    work: Path,
) -> dict[str, list[dict[str, Any]]]:
    """py-spy on one of the server's workers while `load_argv` (a wrk command line without its
    duration) keeps it busy: bench/results/{name}-flame.svg and the hottest frames."""
    py_spy = ensure_py_spy()
    if py_spy is None:
        return {}
    pid = worker_pids(server.pid)[-1]
    raw = work / f"{name}.collapsed"
    svg = RESULTS / f"{name}-flame.svg"
    load = subprocess.Popen(
        [*load_argv[:1], f"-d{2 * duration + 4}s", *load_argv[1:]],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        time.sleep(1)
        for out, fmt in ((svg, "flamegraph"), (raw, "raw")):
            result = subprocess.run(
                [
                    py_spy,
                    *("record", "--pid", str(pid), "--duration", str(duration)),
                    *("--format", fmt, "--output", str(out), "--nonblocking"),
                ],
                capture_output=True,
                text=True,
                check=False,
                timeout=duration + 60,
            )
            if result.returncode != 0:
                print(f"  py-spy failed: {result.stderr.strip()[-300:]}")
                return {}
    finally:
        stop_group(load)
    print(f"  flame graph: {svg}")
    return hottest(raw.read_text(encoding="utf-8"))


def profile(
    url: str, header: str, server: subprocess.Popen[bytes], duration: int, work: Path
) -> dict[str, list[dict[str, Any]]]:
    """Vigie's fetch path under 32 connections: bench/results/fetch-flame.svg."""
    load = ["wrk", f"-t{THREADS}", f"-c{CONNECTIONS}", "-H", header, url]
    return profile_under_load("fetch", load, server, duration, work)


# --- PostgreSQL -----------------------------------------------------------------------------

POSTGRES_ADMIN_URL = "postgres://postgres@127.0.0.1:5432/postgres"


@contextlib.contextmanager
def postgres_database(admin_url: str | None = None) -> Iterator[tuple[str, str]]:
    """A fresh database `vigie_bench_<random>`, dropped afterwards: (its URL, server version)."""
    import psycopg

    admin = admin_url or os.environ.get("BENCH_POSTGRES_URL") or POSTGRES_ADMIN_URL
    parts = urlsplit(admin)
    name = f"vigie_bench_{secrets.token_hex(4)}"
    with psycopg.connect(admin, autocommit=True, connect_timeout=5) as conn:
        version = str(conn.execute("SHOW server_version").fetchone()[0])  # type: ignore[index]
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield urlunsplit((parts.scheme, parts.netloc, f"/{name}", "", "")), version
    finally:
        with psycopg.connect(admin, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# --- main -----------------------------------------------------------------------------------


@dataclass
class Target:
    """One server under test: what wrk fetches and what the answer must be."""

    url: str
    header: str
    expected: bytes
    process: subprocess.Popen[bytes] | None = None


def _median(values: list[float]) -> float:
    return float(statistics.median(values))


def median_cpu(runs: list[Run]) -> float | None:
    measured = [r.cpu_ms_per_request for r in runs if r.cpu_ms_per_request is not None]
    return round(_median(measured), 3) if measured else None


def _versions(orthanc_version: str, postgres_version: str | None) -> dict[str, str | None]:
    nginx = find("nginx")
    out = ""
    if nginx:
        out = subprocess.run([nginx, "-v"], capture_output=True, text=True, check=False).stderr
    wrk_out = subprocess.run(["wrk", "-v"], capture_output=True, text=True, check=False).stdout
    return {
        "nginx": out.strip().rpartition("/")[2] or None,
        "orthanc": orthanc_version,
        "postgresql": postgres_version,
        "wrk": wrk_out.split()[1] if len(wrk_out.split()) > 1 else None,
        "python": platform.python_version(),
    }


def run(
    duration: int = 5,
    rounds: int = 3,
    connections: list[int] | None = None,
    workers: int = 2,
    threads: int = 8,
    with_profile: bool = False,
    scheme: str = "sha",
    with_postgres: bool = True,
    with_noaudit: bool = False,
) -> dict[str, Any]:
    """The fetch matrix: servers x connection counts, `rounds` interleaved rounds of
    `duration` seconds each (inside a round, every server in turn at each connection count)."""
    connections = list(connections or [32, 256])
    ensure_debian_packages()
    RESULTS.mkdir(parents=True, exist_ok=True)
    procs = Processes()
    work = Path(tempfile.mkdtemp(prefix="vigie-bench-fetch-"))
    stack = contextlib.ExitStack()
    skipped: dict[str, str] = {}
    postgres_version: str | None = None
    try:
        pdf = make_pdf()
        targets: dict[str, Target] = {}
        nginx_url, nginx_auth, nginx = start_nginx(work, procs, pdf, workers, scheme)
        targets["nginx"] = Target(nginx_url, f"Authorization: {nginx_auth}", pdf, nginx)
        orthanc = start_orthanc(work, procs, http_port=free_port(), dicom_port=free_port(), pdf=pdf)
        targets["orthanc"] = Target(orthanc.url, orthanc.header, orthanc.instance, orthanc.process)
        url, cookie, process = start_vigie(work, procs, pdf, workers, threads, name="vigie-sqlite")
        targets["vigie-sqlite"] = Target(url, f"Cookie: {cookie}", pdf, process)
        if with_postgres:
            try:
                database_url, postgres_version = stack.enter_context(postgres_database())
            except Exception as exc:  # no server, no rights: say so, measure the rest
                skipped["vigie-postgresql"] = f"PostgreSQL unavailable: {exc}"
                print(f"  skipping Vigie on PostgreSQL: {exc}")
            else:
                url, cookie, process = start_vigie(
                    work,
                    procs,
                    pdf,
                    workers,
                    threads,
                    name="vigie-postgresql",
                    database_url=database_url,
                )
                targets["vigie-postgresql"] = Target(url, f"Cookie: {cookie}", pdf, process)
        if with_noaudit:
            # Same server, audit of reads off (benchmark build only): what the audit costs.
            url, cookie, process = start_vigie(
                work,
                procs,
                pdf,
                workers,
                threads,
                name="vigie-noaudit",
                wsgi_app="bench.noaudit_wsgi:application",
            )
            targets["vigie-noaudit"] = Target(url, f"Cookie: {cookie}", pdf, process)
        for target in targets.values():
            check_fetch(target.url, target.header, target.expected)

        runs: dict[str, dict[int, list[Run]]] = {
            name: {c: [] for c in connections} for name in targets
        }
        for index in range(rounds):
            print(f" round {index + 1}/{rounds}")
            for count in connections:
                for name, target in targets.items():
                    pid = target.process.pid if target.process else None
                    runs[name][count].append(
                        wrk(name, target.url, target.header, duration, count, pid)
                    )
        # The answers are still right after the load (a session that expired mid-run, a
        # server that fell over, would show here).
        for target in targets.values():
            check_fetch(target.url, target.header, target.expected)
        hot: dict[str, list[dict[str, Any]]] = {}
        if with_profile:
            vigie = targets["vigie-sqlite"]
            assert vigie.process is not None
            hot = profile(vigie.url, vigie.header, vigie.process, duration, work)
    finally:
        procs.stop_all()
        stack.close()
        if not os.environ.get("BENCH_KEEP"):
            shutil.rmtree(work, ignore_errors=True)

    servers: dict[str, dict[str, Any]] = {
        name: {
            str(count): {
                "requests_per_s": round(_median([r.requests_per_s for r in rs]), 1),
                "p50_ms": round(_median([r.p50_ms for r in rs]), 2),
                "p99_ms": round(_median([r.p99_ms for r in rs]), 2),
                "cpu_ms_per_request": median_cpu(rs),
                "errors": [r.errors for r in rs if r.errors],
                "runs": [r.__dict__ for r in rs],
            }
            for count, rs in by_count.items()
        }
        for name, by_count in runs.items()
    }
    ratios: dict[str, dict[str, float]] = {}
    targets_met: dict[str, dict[str, bool]] = {}
    for key in map(str, connections):
        ratios[key], targets_met[key] = {}, {}
        for which in (server for server in servers if server.startswith("vigie-")):
            row = servers[which][key]
            rate = row["requests_per_s"]
            judged = which != "vigie-noaudit"
            for base, floor in (
                ("nginx", goal.READ_OVER_NGINX),
                ("orthanc", goal.READ_OVER_ORTHANC),
            ):
                ratio = rate / max(servers[base][key]["requests_per_s"], 1e-9)
                ratios[key][f"{which}/{base}"] = round(ratio, 4)
                if judged and key == goal.JUDGED_AT:
                    targets_met[key][f"{which}/{base} >= {floor}"] = ratio >= floor
            if not judged:
                continue
            if key == goal.JUDGED_AT:
                p99_limit = goal.READ_P99_MS_AT_32
                cpu = row["cpu_ms_per_request"]
                if cpu is not None:
                    targets_met[key][f"{which} CPU <= {goal.READ_CPU_MS} ms/req"] = (
                        cpu <= goal.READ_CPU_MS
                    )
                if which == "vigie-postgresql" and "vigie-sqlite" in servers:
                    sqlite = servers["vigie-sqlite"][key]["requests_per_s"]
                    ratios[key]["vigie-postgresql/vigie-sqlite"] = round(
                        rate / max(sqlite, 1e-9), 4
                    )
                    targets_met[key][f"postgresql/sqlite >= {goal.POSTGRES_OVER_SQLITE}"] = (
                        rate >= goal.POSTGRES_OVER_SQLITE * sqlite
                    )
            else:
                p99_limit = goal.READ_P99_MS_AT_256
            targets_met[key][f"{which} p99 <= {p99_limit:g} ms"] = row["p99_ms"] <= p99_limit
    return {
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "document_bytes": DOC_SIZE,
        "orthanc_instance_bytes": len(orthanc.instance),
        "wrk": {"threads": THREADS, "duration_s": duration, "timeout_s": 10},
        "connections": connections,
        "rounds": rounds,
        "setup": {
            "nginx_workers": workers,
            "nginx_htpasswd_scheme": scheme,
            "vigie_workers": workers,
            "vigie_threads": threads,
            "orthanc_http_threads": HTTP_THREADS,
        },
        "servers": servers,
        "skipped": skipped,
        "ratios": ratios,
        "targets": {
            "vigie_over_nginx_at_least": goal.READ_OVER_NGINX,
            "vigie_over_orthanc_at_least": goal.READ_OVER_ORTHANC,
            "vigie_p99_ms_at_most_at_32": goal.READ_P99_MS_AT_32,
            "vigie_p99_ms_at_most_at_256": goal.READ_P99_MS_AT_256,
            "vigie_cpu_ms_per_read_at_most": goal.READ_CPU_MS,
            "postgresql_over_sqlite_at_least": goal.POSTGRES_OVER_SQLITE,
            "met": targets_met,
            "all_met": all(v for per in targets_met.values() for v in per.values()),
        },
        "hottest_frames": hot,
        "versions": _versions(orthanc.version, postgres_version),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
    }


def print_table(results: dict[str, Any]) -> None:
    print(
        f"{'server':<18} {'conns':>5} {'req/s':>10} {'p50 ms':>9} {'p99 ms':>9} {'CPU ms/req':>10}"
    )
    for name, by_count in results["servers"].items():
        for count, r in by_count.items():
            cpu = r.get("cpu_ms_per_request")
            print(
                f"{name:<18} {count:>5} {r['requests_per_s']:>10,.0f}"
                f" {r['p50_ms']:>9.2f} {r['p99_ms']:>9.2f}"
                f" {cpu if cpu is not None else '?':>10}"
                + (f"  errors: {'; '.join(r['errors'])}" if r["errors"] else "")
            )
    for count, per in results["ratios"].items():
        line = ", ".join(f"{k} {v:.3f}" for k, v in per.items())
        print(f"ratios at {count} connections: {line}")
    for count, per in results["targets"]["met"].items():
        for name, met in per.items():
            print(f"  target {name} at {count} connections: {'met' if met else 'NOT met'}")
    for kind, title in (("self", "self time"), ("by_vigie_caller", "by Vigie caller")):
        if results["hottest_frames"].get(kind):
            print(f"hottest frames ({title}):")
        for spot in results["hottest_frames"].get(kind, []):
            print(f"  {spot['percent']:5.1f}%  {spot['frame']}")


def run_fetch(duration: int, rounds: int, connections: list[int], profile: bool) -> dict[str, Any]:
    """The orchestrator's entry: the whole fetch matrix; also writes fetch-latest.json."""
    results = run(duration, rounds, connections, with_profile=profile)
    out = RESULTS / "fetch-latest.json"
    out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--duration", type=int, default=5, help="seconds per wrk run")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--connections", default="32,256", help="comma-separated wrk connection counts"
    )
    parser.add_argument("--workers", type=int, default=2, help="nginx and granian workers")
    parser.add_argument("--threads", type=int, default=8, help="granian blocking threads")
    parser.add_argument("--profile", action="store_true", help="py-spy flame graph of Vigie")
    parser.add_argument("--no-postgres", action="store_true", help="skip Vigie on PostgreSQL")
    parser.add_argument("--noaudit", action="store_true", help="add the no-audit build")
    parser.add_argument(
        "--htpasswd", choices=["apr1", "sha"], default="sha", help="nginx's password scheme"
    )
    options = parser.parse_args(argv)
    results = run(
        options.duration,
        options.rounds,
        [int(c) for c in options.connections.split(",") if c.strip()],
        options.workers,
        options.threads,
        options.profile,
        options.htpasswd,
        not options.no_postgres,
        options.noaudit,
    )
    print_table(results)
    out = RESULTS / "fetch-latest.json"
    out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(f"written {out}")


if __name__ == "__main__":
    main()
