"""Fetch: one 200 KB PDF, served by nginx (static file + auth_basic) and by Vigie.

nginx is the incident's baseline: a static file behind a password. Vigie pays for what nginx
does not do: a server-side session, the access decision, a durable audit event before the
first byte, and decryption. Both are driven by wrk (32 connections, 2 threads, 10 s per run),
alternating nginx, Vigie, nginx, Vigie... so drift on a shared machine hits both alike.

Targets (issue): Vigie ≥ 0.5 x nginx's requests/s, Vigie p99 ≤ 25 ms.

Vigie runs in production mode (SQLite, its own keyring) on plain loopback HTTP (VIGIE_TLS=false);
a doctor with a care relationship logs in over HTTP with password + TOTP, and wrk replays the
session cookie on /documents/<id>/content. py-spy (installed into the venv from PyPI when
missing) profiles the granian worker during an extra run: bench/results/fetch-flame.svg and
the hottest frames in fetch-latest.json.

Run with `make bench` or `python -m bench.fetch [--duration 10 --rounds 3]`.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import hashlib
import http.client
import io
import json
import os
import platform
import random
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urljoin, urlsplit

RESULTS = Path(__file__).parent / "results"
DOC_SIZE = 200 * 1024
CONNECTIONS = 32
THREADS = 2
_MARK = "@@BENCH@@"
_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0}


# --- processes ------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def stop_group(process: subprocess.Popen[Any]) -> None:
    """SIGTERM the process group, wait, then SIGKILL whatever is left."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=10)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=5)


@dataclass
class Processes:
    """Everything this benchmark started, stopped in reverse order whatever happens."""

    started: list[subprocess.Popen[Any]] = field(default_factory=list)

    def start(self, argv: list[str], log: Path, **kwargs: Any) -> subprocess.Popen[bytes]:
        with log.open("ab") as out:
            process = subprocess.Popen(
                argv,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                **kwargs,
            )
        self.started.append(process)
        return process

    def stop_all(self) -> None:
        for process in reversed(self.started):
            stop_group(process)
        self.started.clear()


def wait_http(port: int, path: str, process: subprocess.Popen[Any], log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"{log.stem} exited {process.returncode}:\n{tail(log)}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", path)
            conn.getresponse().read()
            conn.close()
            return
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"nothing answered on port {port} within 60 s:\n{tail(log)}")


def tail(log: Path) -> str:
    try:
        return log.read_text(encoding="utf-8", errors="replace")[-3000:]
    except OSError:
        return ""


def ensure_debian_packages() -> None:
    missing = [pkg for pkg, cmd in (("nginx-light", "nginx"), ("wrk", "wrk")) if not find(cmd)]
    if not missing:
        return
    print(f"installing {' '.join(missing)} from Debian's packages")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(["apt-get", "install", "-y", "-qq", *missing], check=True, env=env)


def find(command: str) -> str | None:
    return shutil.which(command) or shutil.which(command, path="/usr/sbin:/usr/bin:/sbin:/bin")


# --- the document ---------------------------------------------------------------------------


def _render_pages(pages: int) -> bytes:
    from reportlab.lib.pagesizes import A4
    from reportlab.pdfgen import canvas

    rng = random.Random(200)  # the same document every run
    buffer = io.BytesIO()
    pdf = canvas.Canvas(buffer, pagesize=A4, pageCompression=0)
    words = ["hémoglobine", "créatinine", "glycémie", "ferritine", "leucocytes", "plaquettes"]
    for _ in range(pages):
        for line in range(60):
            text = " ".join(rng.choice(words) for _ in range(8))
            pdf.drawString(40, 800 - line * 12.5, f"{text} {rng.random():.4f}")
        pdf.showPage()
    pdf.save()
    return buffer.getvalue()


def make_pdf(size: int = DOC_SIZE) -> bytes:
    """A real PDF (reportlab) of text pages, padded with a trailing comment to exactly `size`."""
    per_page = len(_render_pages(2)) - len(_render_pages(1))
    data = _render_pages(max(1, int(size * 0.9) // per_page))
    if len(data) > size - 2:
        raise SystemExit(f"generated PDF is {len(data)} bytes, more than {size}")
    return data + b"%" + b"x" * (size - len(data) - 2) + b"\n"


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
) -> tuple[str, str]:
    """(URL, Authorization header) of the PDF served by nginx."""
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
    return f"http://127.0.0.1:{port}/result.pdf", auth


# --- Vigie ----------------------------------------------------------------------------------

_SETUP = """
import io, json
from datetime import date, timedelta
from pathlib import Path
from django.utils import timezone
from django_otp.plugins.otp_totp.models import TOTPDevice
from vigie.accounts.models import Role, User
from vigie.records.ingest import DocumentMeta, ingest
from vigie.records.models import CareRelationship, CareRole, Patient
args = json.loads(Path({args!r}).read_text())
user = User(username="bench.doctor", first_name="Banc", last_name="Essai", role=Role.DOCTOR)
user.set_password(args["password"])
user.save()
device = TOTPDevice.objects.create(user=user, name="authenticator", confirmed=True)
patient = Patient.objects.create(
    ipp="BENCH-0001", family_name="BANC", given_names="Essai", birth_date=date(1970, 1, 1)
)
CareRelationship.objects.create(
    doctor=user, patient=patient, role=CareRole.TREATING,
    valid_from=timezone.now() - timedelta(days=1),
)
with open(args["pdf"], "rb") as handle:
    doc = ingest(patient, DocumentMeta(kind="lab_result", title="Bilan sanguin",
        clinical_date=date.today(), source_system="bench", author="Laboratoire"), handle)
print({mark!r} + json.dumps(dict(document=doc.id, totp_key=device.key)))
"""


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


def start_vigie(
    work: Path,
    procs: Processes,
    pdf: bytes,
    workers: int,
    threads: int,
    *,
    name: str = "vigie",
    wsgi_app: str | None = None,
) -> tuple[str, str, subprocess.Popen[bytes]]:
    """(URL, Cookie header, server process) of the PDF served by Vigie in production mode.

    `wsgi_app` runs granian on another WSGI entry (the benchmark-only no-audit build) instead
    of `vigie serve`; everything else — home, keys, users, login — is set up the same way.
    """
    home = work / f"{name}-home"
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("VIGIE_") and k not in {"DATABASE_URL", "DJANGO_SETTINGS_MODULE"}
    }
    env.update(
        VIGIE_HOME=str(home),
        VIGIE_MODE="production",
        VIGIE_TLS="false",
        VIGIE_SSL_REDIRECT="false",
        PYTHONUNBUFFERED="1",
    )
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
    args_file = work / "setup.json"
    args_file.write_text(
        json.dumps({"password": password, "pdf": str(work / "pdf.pdf")}), encoding="utf-8"
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
    cookie = vigie_login(port, "bench.doctor", password, facts["totp_key"])
    return f"http://127.0.0.1:{port}/documents/{facts['document']}/content", cookie, process


# --- wrk ------------------------------------------------------------------------------------


@dataclass
class Run:
    name: str
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    bytes_per_request: float
    errors: str


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


def parse_wrk(name: str, output: str) -> Run:
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))  # type: ignore[union-attr]
    p50 = _ms(re.search(r"\s50%\s+(\S+)", output).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"\s99%\s+(\S+)", output).group(1))  # type: ignore[union-attr]
    transfer = _bytes(re.search(r"Transfer/sec:\s+(\S+)", output).group(1))  # type: ignore[union-attr]
    errors = "; ".join(
        line.strip() for line in output.splitlines() if "Non-2xx" in line or "Socket errors" in line
    )
    return Run(name, rps, p50, p99, transfer / rps if rps else 0.0, errors)


def wrk(name: str, url: str, header: str, duration: int) -> Run:
    argv = ["wrk", f"-t{THREADS}", f"-c{CONNECTIONS}", f"-d{duration}s", "--latency"]
    argv += ["-H", header, url]
    result = subprocess.run(argv, capture_output=True, text=True, check=True, timeout=duration + 60)
    run = parse_wrk(name, result.stdout)
    print(
        f"  {name:<6} {run.requests_per_s:>9,.0f} req/s  p50 {run.p50_ms:7.2f} ms"
        f"  p99 {run.p99_ms:7.2f} ms  {run.bytes_per_request / 1024:6.1f} KiB/req"
        + (f"  [{run.errors}]" if run.errors else "")
    )
    return run


def check_fetch(url: str, header: str) -> None:
    """One request by hand: a 200 with the PDF, not a login page that wrk would count as fast."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection("127.0.0.1", parts.port, timeout=10)
    key, _, value = header.partition(": ")
    conn.request("GET", parts.path, headers={key: value})
    response = conn.getresponse()
    body = response.read()
    conn.close()
    if response.status != 200 or not body.startswith(b"%PDF") or len(body) != DOC_SIZE:
        raise SystemExit(f"{url} answered {response.status} with {body[:60]!r}")


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


def profile(
    url: str, header: str, server: subprocess.Popen[bytes], duration: int, work: Path
) -> dict[str, list[dict[str, Any]]]:
    py_spy = ensure_py_spy()
    if py_spy is None:
        return {}
    pid = worker_pids(server.pid)[-1]
    raw = work / "fetch.collapsed"
    load = subprocess.Popen(
        [
            "wrk",
            f"-t{THREADS}",
            f"-c{CONNECTIONS}",
            f"-d{2 * duration + 4}s",
            "-H",
            header,
            url,
        ],
        stdout=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        time.sleep(1)
        svg = RESULTS / "fetch-flame.svg"
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
    print(f"  flame graph: {RESULTS / 'fetch-flame.svg'}")
    return hottest(raw.read_text(encoding="utf-8"))


# --- main -----------------------------------------------------------------------------------


def run(
    duration: int = 10,
    rounds: int = 3,
    workers: int = 1,
    threads: int = 8,
    with_profile: bool = True,
    only: str | None = None,
    scheme: str = "sha",
) -> dict[str, Any]:
    ensure_debian_packages()
    RESULTS.mkdir(parents=True, exist_ok=True)
    procs = Processes()
    work = Path(tempfile.mkdtemp(prefix="vigie-bench-fetch-"))
    try:
        pdf = make_pdf()
        nginx_url, nginx_auth = start_nginx(work, procs, pdf, workers, scheme)
        check_fetch(nginx_url, f"Authorization: {nginx_auth}")
        targets = {"nginx": (nginx_url, f"Authorization: {nginx_auth}")}
        server = None
        if only != "nginx":
            vigie_url, cookie, server = start_vigie(work, procs, pdf, workers, threads)
            check_fetch(vigie_url, f"Cookie: {cookie}")
            targets["vigie"] = (vigie_url, f"Cookie: {cookie}")
            # Same server, audit of reads off (benchmark build only): what the audit costs.
            bare_url, bare_cookie, _bare = start_vigie(
                work,
                procs,
                pdf,
                workers,
                threads,
                name="vigie-noaudit",
                wsgi_app="bench.noaudit_wsgi:application",
            )
            check_fetch(bare_url, f"Cookie: {bare_cookie}")
            targets["vigie-noaudit"] = (bare_url, f"Cookie: {bare_cookie}")
        runs: dict[str, list[Run]] = {name: [] for name in targets}
        for index in range(rounds):
            print(f" round {index + 1}/{rounds}")
            for name, (url, header) in targets.items():
                runs[name].append(wrk(name, url, header, duration))
        hot: dict[str, list[dict[str, Any]]] = {}
        if server is not None:
            # The session still works after the runs: the last requests were real fetches.
            check_fetch(*targets["vigie"])
            if with_profile:
                hot = profile(*targets["vigie"], server, duration, work)
    finally:
        procs.stop_all()
        if not os.environ.get("BENCH_KEEP"):
            shutil.rmtree(work, ignore_errors=True)

    def median(values: list[float]) -> float:
        ordered = sorted(values)
        return ordered[len(ordered) // 2]

    summary: dict[str, dict[str, Any]] = {
        name: {
            "requests_per_s": round(median([r.requests_per_s for r in rs]), 1),
            "p50_ms": round(median([r.p50_ms for r in rs]), 2),
            "p99_ms": round(median([r.p99_ms for r in rs]), 2),
            "runs": [r.__dict__ for r in rs],
        }
        for name, rs in runs.items()
    }
    if "vigie" not in summary:
        return {"nginx": summary["nginx"], "rounds": rounds, "partial": "nginx only"}
    ratio = summary["vigie"]["requests_per_s"] / summary["nginx"]["requests_per_s"]
    return {
        "document_bytes": DOC_SIZE,
        "wrk": {"connections": CONNECTIONS, "threads": THREADS, "duration_s": duration},
        "rounds": rounds,
        "servers": {"workers": workers, "vigie_threads": threads, "nginx_workers": workers},
        "nginx_htpasswd_scheme": scheme,
        "nginx": summary["nginx"],
        "vigie": summary["vigie"],
        "vigie_noaudit": summary.get("vigie-noaudit"),
        "audit_cost_p50_ms": (
            round(summary["vigie"]["p50_ms"] - summary["vigie-noaudit"]["p50_ms"], 2)
            if "vigie-noaudit" in summary
            else None
        ),
        "ratio_vigie_over_nginx": round(ratio, 3),
        "targets": {
            "ratio_at_least": 0.5,
            "vigie_p99_ms_at_most": 25,
            "ratio_met": ratio >= 0.5,
            "p99_met": summary["vigie"]["p99_ms"] <= 25,
        },
        "hottest_frames": hot,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=1, help="nginx and granian workers")
    parser.add_argument("--threads", type=int, default=8, help="granian blocking threads")
    parser.add_argument("--no-profile", action="store_true")
    parser.add_argument("--only", choices=["nginx"], help="debug the nginx half alone")
    parser.add_argument(
        "--htpasswd", choices=["apr1", "sha"], default="sha", help="nginx's password scheme"
    )
    options = parser.parse_args(argv)
    results = run(
        options.duration,
        options.rounds,
        options.workers,
        options.threads,
        not options.no_profile,
        options.only,
        options.htpasswd,
    )
    if "partial" in results:
        print(json.dumps(results["nginx"], indent=2))
        return
    for name in ("nginx", "vigie", "vigie_noaudit"):
        r = results.get(name)
        if r is None:
            continue
        print(
            f"{name:<6} {r['requests_per_s']:>9,.0f} req/s   p50 {r['p50_ms']:.2f} ms"
            f"   p99 {r['p99_ms']:.2f} ms   (median of {results['rounds']} runs)"
        )
    print(
        f"ratio vigie/nginx {results['ratio_vigie_over_nginx']:.3f} (target ≥ 0.5); "
        f"vigie p99 {results['vigie']['p99_ms']:.2f} ms (target ≤ 25)"
    )
    if results.get("audit_cost_p50_ms") is not None:
        print(
            f"audit cost at p50: {results['audit_cost_p50_ms']:.2f} ms "
            "(vigie minus the benchmark-only no-audit build; target ≤ 1 ms)"
        )
    for kind, title in (("self", "self time"), ("by_vigie_caller", "by Vigie caller")):
        if results["hottest_frames"].get(kind):
            print(f"hottest frames ({title}):")
        for spot in results["hottest_frames"].get(kind, []):
            print(f"  {spot['percent']:5.1f}%  {spot['frame']}")
    out = RESULTS / "fetch-latest.json"
    out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(f"written {out}")


if __name__ == "__main__":
    main()
