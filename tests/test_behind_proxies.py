"""A clinic's installation as deploy/ ships it, with a real browser: nginx's site
(deploy/nginx/vigie.conf) in front of one `vigie serve`, and HAProxy's configuration
(deploy/haproxy/vigie.cfg) in front of a group of two nodes, each node in production mode
with deploy/vigie.env.example's settings.

Each test runs in a network namespace of its own, so that the proxy listens on 80 and 443 and
the nodes on the addresses the shipped files name (127.0.0.1:8000 for nginx, as
deploy/systemd/vigie-web.service starts it; 10.0.0.11:8000 and 10.0.0.12:8000 for HAProxy):
only the certificate and socket paths change (a self-signed certificate for the portal's
name). The browser reaches the portal from an address of its own, so that the audit shows
whose address Vigie recorded.

What they prove, end to end: plain HTTP is only a redirect; a doctor signs in (password, then
the code) and reads a document, byte for byte, with a Secure session cookie and HSTS; the
audit records the browser's address, neither the proxy's nor the one the browser forged in
X-Forwarded-For; a scanner asking by IP address gets no answer; behind HAProxy, a node killed
is taken out and the doctor's reads go on through the other.
"""

from __future__ import annotations

import base64
import contextlib
import csv
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.browser.chromium import CHROMIUM, CHROMIUM_ARGS
from tests.conftest import VIGIE, _base_env
from tests.deploy_sites import PORTAL, haproxy_binary, haproxy_site, nginx_binary, nginx_site
from vigie.intake.hl7.testing import small_pdf

pytestmark = [pytest.mark.slow, pytest.mark.sqlite_only]

REPO = Path(__file__).resolve().parent.parent
# The browser's own address in the namespace.
CLIENT = "10.99.0.2"
FORGED = "203.0.113.66"
# deploy/haproxy/vigie.cfg's two nodes.
NODES = {"node1": "10.0.0.11", "node2": "10.0.0.12"}
MARK = "@@BEHIND-PROXY@@"

# The doctor who signs in, their patient and the document (see
# vigie.records.testing.seed_reading_doctor), made in `vigie shell` against the clinic.
DOCTOR = {
    "username": "dr.proxy",
    "first_name": "Paul",
    "last_name": "Proxy",
    "ipp": "PROXY-0001",
    "family_name": "PROXY",
    "given_names": "Test",
    "source_system": "lab",
}
SETUP = (
    "import json\n"
    "from vigie.records.testing import seed_reading_doctor as seed\n"
    "print({mark!r} + json.dumps(seed(**json.loads(open({args!r}).read()))))\n"
)

# The document fetched from the page, as its viewer does: same origin, its cookies.
FETCH = """async (url) => {
    const answer = await fetch(url);
    const bytes = new Uint8Array(await answer.arrayBuffer());
    let text = "";
    for (const byte of bytes) text += String.fromCharCode(byte);
    return {status: answer.status, body: btoa(text),
            hsts: answer.headers.get("strict-transport-security") || "",
            cache: answer.headers.get("cache-control") || ""};
}"""

# A scanner: asks by IP address, over HTTP and HTTPS; prints what it got for each.
SCANNER = """
import http.client, ssl
for scheme in ("http", "https"):
    if scheme == "http":
        conn = http.client.HTTPConnection({address!r}, 80, timeout=5)
    else:
        context = ssl.create_default_context()
        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
        conn = http.client.HTTPSConnection({address!r}, 443, timeout=5, context=context)
    try:
        conn.request("GET", "/")
        print(scheme + ":" + str(conn.getresponse().status))
    except Exception as exc:
        print(scheme + ":" + type(exc).__name__)
"""

READ_EVENTS = """
import json
from vigie.audit.models import AuditEvent
print({mark!r} + json.dumps([
    [e.source_ip, e.outcome] for e in AuditEvent.objects.filter(action="document.read")
]))
"""


def _run(*argv: str) -> str:
    result = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    if result.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} exited {result.returncode}\n{result.stderr}")
    return result.stdout


def _needs(*tools: tuple[str, bool]) -> None:
    missing = [name for name, there in tools if not there]
    if missing or os.geteuid() != 0:
        reason = f"needs root and {', '.join(missing) or 'nothing else'} (.ci/run installs them)"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)


@dataclass
class Clinic:
    """A production installation (one doctor, one patient in their care, one document) and
    a network namespace to run its servers and the browser in."""

    root: Path
    env: dict[str, str]
    namespace: str
    password: str
    pdf: bytes
    facts: dict[str, Any]
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def vigie(self, *args: str) -> str:
        result = subprocess.run(
            [*VIGIE, *args], env=self.env, capture_output=True, text=True, timeout=300, check=False
        )
        if result.returncode != 0:
            raise AssertionError(f"vigie {args[0]} exited {result.returncode}\n{result.stderr}")
        return result.stdout

    def shell_json(self, code: str) -> Any:
        out = self.vigie("shell", "--no-imports", "-c", code)
        return json.loads(next(x for x in out.splitlines() if x.startswith(MARK))[len(MARK) :])

    def inside(self, *argv: str) -> list[str]:
        return ["ip", "netns", "exec", self.namespace, *argv]

    def add_address(self, address: str) -> None:
        # On loopback: a connection to it comes from it, as from another machine.
        _run("ip", "-n", self.namespace, "addr", "add", f"{address}/32", "dev", "lo")

    def start(self, name: str, *argv: str) -> subprocess.Popen[bytes]:
        with (self.root / f"{name}.log").open("wb") as log:
            process = subprocess.Popen(
                self.inside(*argv),
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.processes.append(process)
        return process

    def wait_for(self, address: str, port: int, process: subprocess.Popen[bytes]) -> None:
        """Until an HTTP request for the portal to address:port is answered (any status)."""
        probe = (
            "import http.client\n"
            f"conn = http.client.HTTPConnection({address!r}, {port}, timeout=2)\n"
            f"conn.request('GET', '/health', headers={{'Host': {PORTAL!r}}})\n"
            "conn.getresponse()\n"
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise AssertionError(f"{process.args!r} exited {process.returncode}")
            probed = subprocess.run(
                self.inside(sys.executable, "-c", probe), capture_output=True, timeout=30
            )
            if probed.returncode == 0:
                return
            time.sleep(0.3)
        raise AssertionError(f"{address}:{port} never answered")

    def scan(self, address: str) -> list[str]:
        scanned = subprocess.run(
            self.inside(sys.executable, "-c", SCANNER.format(address=address)),
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        return scanned.stdout.split()

    @contextlib.contextmanager
    def page(self) -> Iterator[Any]:
        """A page of real Chromium, run in the namespace, that finds the portal's name at the
        browser's own address and sends a forged X-Forwarded-For with every request."""
        from playwright.sync_api import sync_playwright

        wrapper = self.root / "chromium-in-namespace"
        wrapper.write_text(
            f'#!/bin/sh\nexec ip netns exec {self.namespace} {CHROMIUM} "$@"\n', encoding="utf-8"
        )
        wrapper.chmod(0o700)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=str(wrapper),
                headless=True,
                args=[*CHROMIUM_ARGS, f"--host-resolver-rules=MAP {PORTAL} {CLIENT}"],
            )
            try:
                context = browser.new_context(
                    ignore_https_errors=True,  # the test's own self-signed certificate
                    extra_http_headers={"X-Forwarded-For": FORGED},
                )
                yield context.new_page()
            finally:
                browser.close()

    def sign_in(self, page: Any) -> None:
        """From plain HTTP, as a doctor types the portal's name: the redirect, the login."""
        page.goto(f"http://{PORTAL}/")
        assert page.url.startswith(f"https://{PORTAL}/accounts/login/"), page.url
        page.fill("input[name=username]", DOCTOR["username"])
        page.fill("input[name=password]", self.password)
        # Enter, as a person would: the page's first button is the language's.
        page.press("input[name=password]", "Enter")
        page.wait_for_url("**/accounts/verify/**")
        code = "input[autocomplete=one-time-code]"
        page.fill(code, _totp(self.facts["totp_key"]))
        page.press(code, "Enter")
        page.wait_for_url(f"https://{PORTAL}/")
        session = [c for c in page.context.cookies() if c["name"] == "sessionid"]
        assert len(session) == 1, page.context.cookies()
        assert session[0]["secure"]
        assert session[0]["httpOnly"]

    def read(self, page: Any) -> dict[str, Any]:
        got: dict[str, Any] = page.evaluate(FETCH, f"/documents/{self.facts['document']}/content")
        return got

    def assert_read(self, page: Any) -> None:
        got = self.read(page)
        assert got["status"] == 200, got
        assert base64.b64decode(got["body"]) == self.pdf
        assert "max-age=" in got["hsts"]
        assert got["cache"].startswith("no-store"), got

    def read_addresses(self) -> list[list[str]]:
        events: list[list[str]] = self.shell_json(READ_EVENTS.format(mark=MARK))
        return events


@pytest.fixture
def clinic(tmp_path: Path) -> Iterator[Clinic]:
    _needs(("chromium", CHROMIUM.exists()), ("ip", bool(shutil.which("ip"))))
    env = {
        **_base_env(tmp_path / "home"),
        # deploy/vigie.env.example's settings.
        "VIGIE_MODE": "production",
        "VIGIE_ALLOWED_HOSTS": PORTAL,
        "VIGIE_CSRF_TRUSTED_ORIGINS": f"https://{PORTAL}",
        "VIGIE_TLS": "true",
        # A clinic that accepts the authenticator's codes for doctors (production's default
        # would first ask this new doctor to register a passkey).
        "VIGIE_SIGNIN_METHODS": "doctor=password_totp",
    }
    namespace = f"vigie-px-{secrets.token_hex(3)}"
    clinic = Clinic(tmp_path, env, namespace, secrets.token_urlsafe(16), small_pdf(), {})
    clinic.vigie("keys", "init")
    clinic.vigie("migrate", "--no-input")
    (tmp_path / "document.pdf").write_bytes(clinic.pdf)
    args = tmp_path / "setup.json"
    args.write_text(
        json.dumps({**DOCTOR, "password": clinic.password, "pdf": str(tmp_path / "document.pdf")})
    )
    clinic.facts = clinic.shell_json(SETUP.format(args=str(args), mark=MARK))
    _run("ip", "netns", "add", namespace)
    try:
        _run("ip", "-n", namespace, "link", "set", "lo", "up")
        clinic.add_address(CLIENT)
        yield clinic
    finally:
        for process in clinic.processes:
            _stop(process)
        subprocess.run(["ip", "netns", "del", namespace], capture_output=True, check=False)


def _stop(process: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def _totp(key_hex: str) -> str:
    from django_otp.oath import totp

    return f"{totp(bytes.fromhex(key_hex)):06d}"


def _serve_args() -> list[str]:
    """`vigie serve`'s arguments as deploy/systemd/vigie-web.service gives them."""
    unit = (REPO / "deploy/systemd/vigie-web.service").read_text(encoding="utf-8")
    exec_start = next(x for x in unit.splitlines() if x.startswith("ExecStart="))
    args = exec_start.split("/opt/vigie/bin/vigie ", 1)[1].split()
    assert args[:5] == ["serve", "--host", "127.0.0.1", "--port", "8000"], exec_start
    return args


def test_a_doctor_reads_a_document_through_the_shipped_nginx_site(clinic: Clinic) -> None:
    nginx = nginx_binary()
    _needs(("nginx", bool(nginx)))
    conf = nginx_site(clinic.root, (REPO / "deploy/nginx/vigie.conf").read_text(encoding="utf-8"))
    node = clinic.start("vigie-serve", *VIGIE, *_serve_args())
    proxy = clinic.start(
        "nginx", nginx, "-p", str(clinic.root), "-e", str(clinic.root / "error.log"),
        "-c", str(conf), "-g", "daemon off;",
    )  # fmt: skip
    clinic.wait_for("127.0.0.1", 8000, node)
    clinic.wait_for(CLIENT, 80, proxy)
    with clinic.page() as page:
        clinic.sign_in(page)
        clinic.assert_read(page)
    # A scanner by IP address: no answer over HTTP (444), no certificate over TLS.
    assert clinic.scan(CLIENT) == ["http:RemoteDisconnected", "https:SSLError"]
    # The browser's address: not nginx's (127.0.0.1), not the one it forged.
    assert clinic.read_addresses() == [[CLIENT, "success"]]


def test_the_shipped_haproxy_takes_a_dead_node_out_and_reads_go_on(clinic: Clinic) -> None:
    haproxy = haproxy_binary()
    _needs(("haproxy", bool(haproxy)))
    admin = clinic.root / "admin.sock"
    conf = haproxy_site(clinic.root, (REPO / "deploy/haproxy/vigie.cfg").read_text(), admin)
    # Each node as the configuration's header says: its own address, trusting the proxy's
    # (in this namespace HAProxy reaches a node from the node's own address).
    nodes = {}
    for name, address in NODES.items():
        clinic.add_address(address)
        argv = ["serve", "--host", address, "--port", "8000"]
        argv += ["--behind-proxy", ",".join(NODES.values())]
        nodes[name] = clinic.start(f"vigie-{name}", *VIGIE, *argv)
    proxy = clinic.start("haproxy", haproxy, "-db", "-f", str(conf))
    for name, address in NODES.items():
        clinic.wait_for(address, 8000, nodes[name])
    clinic.wait_for(CLIENT, 80, proxy)
    _wait_until(lambda: _states(admin) == {"node1": "UP", "node2": "UP"}, 30)
    with clinic.page() as page:
        clinic.sign_in(page)
        clinic.assert_read(page)
        os.killpg(nodes["node1"].pid, signal.SIGKILL)
        killed = time.monotonic()
        # Taken out within the configuration's promise (two failed checks a second apart).
        _wait_until(lambda: _states(admin)["node1"].startswith("DOWN"), 10)
        assert time.monotonic() - killed < 5
        for _ in range(10):
            clinic.assert_read(page)
    # A scanner by IP address: dropped unanswered, over HTTP and HTTPS. Mostly silently (it
    # waits until its own timeout); now and then HAProxy's TLS layer closes the connection
    # as it drops it (the scanner reads an end of stream, RemoteDisconnected). Either way
    # not one byte of an HTTP answer: no status, no page.
    scanned = clinic.scan(CLIENT)
    assert [result.split(":")[0] for result in scanned] == ["http", "https"]
    assert {result.split(":")[1] for result in scanned} <= {"TimeoutError", "RemoteDisconnected"}
    # Every read recorded with the browser's address, whichever node served it.
    addresses = clinic.read_addresses()
    assert len(addresses) == 11
    assert {tuple(a) for a in addresses} == {(CLIENT, "success")}


def _states(admin: Path) -> dict[str, str]:
    """Each node's state as HAProxy's runtime API gives it (UP, DOWN, "DOWN 1/2"...)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(5)
        sock.connect(str(admin))
        sock.sendall(b"show stat\n")
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    rows = csv.DictReader(b"".join(chunks).decode().lstrip("# ").splitlines())
    return {
        r["svname"]: r["status"] for r in rows if r["pxname"] == "nodes" and r["svname"] in NODES
    }


def _wait_until(condition: Any, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with contextlib.suppress(KeyError, OSError):
            if condition():
                return
        time.sleep(0.2)
    raise AssertionError(f"not within {seconds} s: {condition}")
