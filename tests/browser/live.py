"""A real Vigie installation served by granian, shared by the browser, crawler and replay tests.

One demo clinic is seeded per test session (`vigie demo --no-serve`, about 20 s) and served by
`vigie serve` on a free loopback port. Tests that need a differently configured server (a short
idle timeout) start a second `vigie serve` on the same installation: same database, same
blobs, other environment. Every process is started in its own process group and stopped
(SIGTERM, then SIGKILL) even when a test fails.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urljoin, urlsplit, urlunsplit

import pytest
from django_otp.oath import hotp

VIGIE = [sys.executable, "-m", "vigie"]
REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts"
_FACTS_MARK = "@@VIGIE-FACTS@@"

# Everything the tests need to know about the seeded clinic, read through the ORM in a
# subprocess running with the installation's own environment.
_FACTS_SCRIPT = f"""
import json
from vigie.records.models import CareRelationship, Document, Patient
patients = [
    dict(public_id=p.public_id, ipp=p.ipp, ins=p.ins, family_name=p.family_name,
         given_names=p.given_names, birth_date=p.birth_date.isoformat())
    for p in Patient.objects.all()
]
documents = [
    dict(id=d.id, patient=d.patient.public_id, title=d.title, size=d.size)
    for d in Document.objects.select_related("patient")
]
scope = {{}}
for r in CareRelationship.objects.active().select_related("doctor", "patient"):
    scope.setdefault(r.doctor.username, []).append(r.patient.public_id)
print({_FACTS_MARK!r} + json.dumps(dict(patients=patients, documents=documents, scope=scope)))
"""


@dataclass(frozen=True)
class Login:
    username: str
    password: str
    role: str
    totp_secret: str | None = None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def totp_at(secret_b32: str, counter: int, digits: int = 6) -> str:
    """The RFC 6238 code for time step `counter` of a base32 secret (as an authenticator app)."""
    padded = secret_b32.replace(" ", "").upper()
    padded += "=" * (-len(padded) % 8)
    return f"{hotp(base64.b32decode(padded), counter, digits):0{digits}d}"


class TotpClock:
    """Hands out codes an authenticator app would show, never the same time step twice.

    django-otp refuses a code whose time step is not later than the last accepted one (replay
    protection) and accepts one step of drift either side. So a second login within the same
    30 s uses the next step's code; a third waits for the clock.
    """

    def __init__(self, step: int = 30, tolerance: int = 1) -> None:
        self.step = step
        self.tolerance = tolerance
        self._last: dict[str, int] = {}
        self._lock = threading.Lock()

    def now(self) -> int:
        return int(time.time()) // self.step

    def code(self, secret_b32: str) -> str:
        with self._lock:
            wanted = max(self.now(), self._last.get(secret_b32, -1) + 1)
            while wanted > self.now() + self.tolerance:
                time.sleep((self.now() + 1) * self.step - time.time() + 0.2)
            self._last[secret_b32] = wanted
            return totp_at(secret_b32, wanted)


def stop_process_group(process: subprocess.Popen[Any], timeout: float = 10) -> None:
    """SIGTERM the process group, then SIGKILL whatever is left."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=timeout)
    # granian's workers share the group: make sure none outlives its parent.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=5)


def http_get(base_url: str, path: str, timeout: float = 5) -> tuple[int, bytes]:
    parts = urlsplit(base_url)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=timeout)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


class _Forms(HTMLParser):
    """Every POST form of a page: (action, {name: value}) in page order."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: list[tuple[str, dict[str, str]]] = []
        self._current: dict[str, str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attr = {k: v or "" for k, v in attrs}
        if tag == "form" and attr.get("method", "").lower() == "post":
            self._current = {}
            self.forms.append((attr.get("action", ""), self._current))
        elif (
            tag in {"input", "textarea", "select"}
            and self._current is not None
            and attr.get("name")
        ):
            self._current[attr["name"]] = attr.get("value", "")

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._current = None


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes
    path: str  # where the last request went (after redirects)

    @property
    def location(self) -> str:
        return self.headers.get("location", "")

    def text(self) -> str:
        return self.body.decode("utf-8", "replace")


class HttpClient:
    """A cookie-keeping client on plain http.client: what a script (or a thief) would use."""

    def __init__(self, base_url: str) -> None:
        parts = urlsplit(base_url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 80
        self.origin = f"{parts.scheme}://{parts.netloc}"
        self.cookies: dict[str, str] = {}

    def request(
        self,
        method: str,
        path: str,
        form: dict[str, str] | None = None,
        *,
        follow: bool = True,
        cookies: dict[str, str] | None = None,
    ) -> Reply:
        jar = self.cookies if cookies is None else cookies
        for _ in range(10):
            conn = http.client.HTTPConnection(self.host, self.port, timeout=10)
            headers = {"Cookie": "; ".join(f"{k}={v}" for k, v in jar.items())}
            body = None
            if form is not None:
                body = urlencode(form)
                headers["Content-Type"] = "application/x-www-form-urlencoded"
                headers["Origin"] = self.origin
                headers["Referer"] = self.origin + path
            try:
                conn.request(method, path, body=body, headers=headers)
                response = conn.getresponse()
                content = response.read()
                answer_headers = {k.lower(): v for k, v in response.getheaders()}
                for name, value in response.getheaders():
                    if name.lower() == "set-cookie":
                        key, _, rest = value.partition("=")
                        morsel = rest.split(";")[0]
                        if morsel in {"", '""'} or "max-age=0" in value.lower():
                            jar.pop(key.strip(), None)
                        else:
                            jar[key.strip()] = morsel
            finally:
                conn.close()
            reply = Reply(response.status, answer_headers, content, path)
            if not follow or response.status not in {301, 302, 303} or not reply.location:
                return reply
            target = urlsplit(urljoin(self.origin + path, reply.location))
            path = target.path + (f"?{target.query}" if target.query else "")
            method, form = "GET", None
        raise AssertionError("too many redirects")

    def submit(self, reply: Reply, values: dict[str, str]) -> Reply:
        """Fill in and post the first POST form of `reply`'s page that has these fields."""
        parser = _Forms()
        parser.feed(reply.text())
        action, fields = next(
            (form for form in parser.forms if set(values) <= set(form[1])),
            ("", {}),
        )
        assert fields, f"no form with {sorted(values)} at {reply.path}"
        return self.request("POST", urljoin(reply.path, action or reply.path), {**fields, **values})

    def login(self, installation: Installation, user: Login) -> Reply:
        """Password, then the authenticator's current code, like a person at the keyboard."""
        page = self.request("GET", "/accounts/login/")
        page = self.submit(page, {"username": user.username, "password": user.password})
        assert page.path.startswith("/accounts/verify/"), page.path
        assert user.totp_secret is not None
        page = self.submit(page, {"code": installation.totp(user.totp_secret)})
        assert not page.path.startswith("/accounts/"), f"second factor refused: {page.path}"
        return page


@dataclass
class Server:
    base_url: str
    process: subprocess.Popen[bytes]
    log: Path

    def stop(self) -> None:
        stop_process_group(self.process)

    def log_text(self) -> str:
        try:
            return self.log.read_text(encoding="utf-8", errors="replace")[-4000:]
        except OSError:
            return ""


@dataclass
class Installation:
    """A seeded demo installation in a temporary VIGIE_HOME."""

    root: Path
    env: dict[str, str]
    clock: TotpClock = field(default_factory=TotpClock)
    servers: list[Server] = field(default_factory=list)
    _facts: dict[str, Any] | None = None

    @property
    def home(self) -> Path:
        return Path(self.env["VIGIE_HOME"])

    def vigie(self, *args: str, check: bool = True, timeout: float = 120) -> str:
        result = subprocess.run(
            [*VIGIE, *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"vigie {' '.join(args[:2])} exited {result.returncode}\n{result.stdout}\n{result.stderr}"
            )
        return result.stdout

    def shell(self, code: str) -> str:
        return self.vigie("shell", "--no-imports", "-c", code)

    def shell_json(self, code: str, mark: str) -> Any:
        """Run `code` (which prints `mark` + JSON on one line) and return the JSON."""
        for line in self.shell(code).splitlines():
            if line.startswith(mark):
                return json.loads(line[len(mark) :])
        raise AssertionError(f"no {mark} line in the shell's output")

    def seed(self) -> None:
        self.vigie("demo", "--no-serve", timeout=300)
        # As `vigie demo` does before serving: granian then serves /static itself, and the
        # crawler gets to try its traversal tricks on that route too.
        self.vigie("collectstatic", "--no-input", "--verbosity", "0")

    @property
    def logins(self) -> list[Login]:
        data = json.loads((self.home / "demo-credentials.json").read_text(encoding="utf-8"))
        return [Login(**user) for user in data["users"]]

    def login(self, role: str = "doctor", index: int = 0) -> Login:
        return [user for user in self.logins if user.role == role][index]

    @property
    def facts(self) -> dict[str, Any]:
        if self._facts is None:
            self._facts = self.shell_json(_FACTS_SCRIPT, _FACTS_MARK)
        return self._facts

    def create_doctor(self, username: str, *, totp: bool = True) -> Login:
        """A new doctor with no patients; with a confirmed authenticator unless `totp` is False."""
        password = secrets.token_urlsafe(16)
        mark = "@@VIGIE-USER@@"
        code = f"""
import json
from base64 import b32encode
from django_otp.plugins.otp_totp.models import TOTPDevice
from vigie.accounts.models import Role, User
user = User(username={username!r}, first_name="Test", last_name={username!r}, role=Role.DOCTOR)
user.set_password({password!r})
user.save()
secret = None
if {totp!r}:
    device = TOTPDevice.objects.create(user=user, name="authenticator", confirmed=True)
    secret = b32encode(device.bin_key).decode("ascii")
print({mark!r} + json.dumps(secret))
"""
        secret = self.shell_json(code, mark)
        return Login(username=username, password=password, role="doctor", totp_secret=secret)

    def age_session(self, session_key: str, idle_seconds: float) -> None:
        """Make a session look idle for `idle_seconds` (as if nobody had clicked since)."""
        self.shell(
            f"""
import time
from importlib import import_module
from django.conf import settings
from vigie.accounts.sessions import LAST_SEEN
store = import_module(settings.SESSION_ENGINE).SessionStore(session_key={session_key!r})
assert store.get(LAST_SEEN), "no such session"
store[LAST_SEEN] = time.time() - {idle_seconds!r}
store.save()
"""
        )

    def reset_lockouts(self) -> None:
        """Forget every counted attempt, for accounts and addresses alike."""
        self.vigie("lockout", "reset")

    def totp(self, secret_b32: str) -> str:
        return self.clock.code(secret_b32)

    def start_server(self, **extra_env: str) -> Server:
        port = free_port()
        log = self.root / f"serve-{port}.log"
        env = {**self.env, **extra_env}
        with log.open("wb") as out:
            process = subprocess.Popen(
                [
                    *VIGIE,
                    "serve",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(port),
                    "--workers",
                    "1",
                    "--threads",
                    "4",
                ],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        server = Server(base_url=f"http://127.0.0.1:{port}", process=process, log=log)
        self.servers.append(server)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise AssertionError(
                    f"vigie serve exited {process.returncode}\n{server.log_text()}"
                )
            with contextlib.suppress(OSError):
                if http_get(server.base_url, "/health", timeout=2)[0] == 200:
                    return server
            time.sleep(0.2)
        server.stop()
        raise AssertionError(f"vigie serve did not answer /health in 60 s\n{server.log_text()}")

    def close(self) -> None:
        for server in self.servers:
            server.stop()
        self.servers.clear()


def _postgres_database() -> tuple[str, str] | None:
    """(admin URL, URL of a fresh database) when the run targets PostgreSQL."""
    url = os.environ.get("DATABASE_URL", "")
    if not url.startswith("postgres"):
        return None
    import psycopg

    name = f"vigie_live_{secrets.token_hex(4)}"
    parts = urlsplit(url)
    admin_url = urlunsplit((parts.scheme, parts.netloc, "/postgres", "", ""))
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return admin_url, urlunsplit((parts.scheme, parts.netloc, f"/{name}", "", ""))


def _drop_postgres_database(admin_url: str, url: str) -> None:
    import psycopg

    name = urlsplit(url).path.lstrip("/")
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@dataclass
class Live:
    """What a test gets: the installation and its main server."""

    installation: Installation
    server: Server

    @property
    def base_url(self) -> str:
        return self.server.base_url


_shared: Live | None = None
_users = 0
_pg: tuple[str, str] | None = None


def _start_shared() -> Live:
    global _pg
    root = Path(tempfile.mkdtemp(prefix="vigie-live-"))
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("VIGIE_") and k not in {"DATABASE_URL", "DJANGO_SETTINGS_MODULE"}
    }
    env.update(VIGIE_HOME=str(root / "home"), VIGIE_MODE="demo", PYTHONUNBUFFERED="1")
    _pg = _postgres_database()
    if _pg is not None:
        env["DATABASE_URL"] = _pg[1]
    installation = Installation(root=root, env=env)
    try:
        installation.seed()
        server = installation.start_server()
    except BaseException:
        _stop_shared(installation)
        raise
    return Live(installation=installation, server=server)


def _stop_shared(installation: Installation) -> None:
    global _pg
    installation.close()
    if _pg is not None:
        _drop_postgres_database(*_pg)
        _pg = None
    shutil.rmtree(installation.root, ignore_errors=True)


@pytest.fixture(scope="session", name="live")
def live_fixture() -> Iterator[Live]:
    """The seeded demo clinic behind a running `vigie serve` (one per test session).

    Defined here and imported by tests/browser/conftest.py and the top-level whole-system
    tests; a reference count makes every importer share one installation.
    """
    global _shared, _users
    if _shared is None:
        _shared = _start_shared()
    _users += 1
    try:
        yield _shared
    finally:
        _users -= 1
        if _users == 0 and _shared is not None:
            _stop_shared(_shared.installation)
            _shared = None
