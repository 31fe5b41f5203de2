"""A clinic's installation as deploy/ ships it: nginx's site (deploy/nginx/vigie.conf) in front
of a production `vigie serve` started as deploy/systemd/vigie-web.service starts it, with the
settings of deploy/vigie.env.example, and a real browser.

Everything runs in a network namespace of its own, so that nginx listens on 80 and 443 and
Vigie on 127.0.0.1:8000 exactly as installed; only the certificate paths change (a
self-signed certificate for the portal's name). The browser reaches the portal from an
address of its own (not nginx's), so that the audit shows whose address Vigie recorded.

What it proves, end to end: plain HTTP is only a redirect; a doctor signs in (password, then
the code) and reads a document, byte for byte, with a Secure session cookie and HSTS; the
audit records the browser's address, neither nginx's nor the one the browser forged in
X-Forwarded-For; a scanner asking by IP address gets no answer and no certificate.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import VIGIE, _base_env
from tests.deploy_sites import PORTAL, nginx_binary, nginx_site
from vigie.intake.hl7.testing import small_pdf

pytestmark = [pytest.mark.slow, pytest.mark.sqlite_only]

REPO = Path(__file__).resolve().parent.parent
CHROMIUM = Path("/usr/bin/chromium")
# The browser's own address in the namespace: nginx sees it as the
# client's, and so must the audit.
CLIENT = "10.99.0.2"
FORGED = "203.0.113.66"
MARK = "@@BEHIND-NGINX@@"

SETUP = """
import json
from datetime import date, timedelta
from django.utils import timezone
from django_otp.plugins.otp_totp.models import TOTPDevice
from vigie.accounts.models import Role, User
from vigie.records.ingest import DocumentMeta, ingest
from vigie.records.models import CareRelationship, CareRole, Patient
args = json.loads(open({args!r}).read())
user = User(username="dr.proxy", first_name="Paul", last_name="Proxy", role=Role.DOCTOR)
user.set_password(args["password"])
user.save()
device = TOTPDevice.objects.create(user=user, name="authenticator", confirmed=True)
patient = Patient.objects.create(
    ipp="PROXY-0001", family_name="NGINX", given_names="Test", birth_date=date(1970, 1, 1)
)
CareRelationship.objects.create(
    doctor=user, patient=patient, role=CareRole.TREATING,
    valid_from=timezone.now() - timedelta(days=1),
)
with open(args["pdf"], "rb") as handle:
    doc = ingest(patient, DocumentMeta(kind="lab_result", title="Bilan sanguin",
        clinical_date=date.today(), source_system="lab", author="Laboratoire"), handle)
print({mark!r} + json.dumps(dict(document=doc.id, totp_key=device.key)))
"""

FETCH = """async (url) => {
    const answer = await fetch(url);
    const bytes = new Uint8Array(await answer.arrayBuffer());
    let text = "";
    for (const byte of bytes) text += String.fromCharCode(byte);
    return {status: answer.status, body: btoa(text),
            hsts: answer.headers.get("strict-transport-security") || "",
            cache: answer.headers.get("cache-control") || ""};
}"""

SCANNER = """
import http.client, socket, ssl
try:
    conn = http.client.HTTPConnection({address!r}, 80, timeout=10)
    conn.request("GET", "/")
    print("http:" + str(conn.getresponse().status))
except Exception as exc:
    print("http:" + type(exc).__name__)
context = ssl.create_default_context()
context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
try:
    with socket.create_connection(({address!r}, 443), timeout=10) as raw:
        with context.wrap_socket(raw) as tls:
            print("https:" + str(tls.version()))
except Exception as exc:
    print("https:" + type(exc).__name__)
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


@contextlib.contextmanager
def _namespace() -> Iterator[str]:
    """A network namespace with loopback (IPv4 and IPv6) and the browser's address."""
    name = f"vigie-ngx-{secrets.token_hex(3)}"
    _run("ip", "netns", "add", name)
    try:
        _run("ip", "-n", name, "link", "set", "lo", "up")
        # On loopback too: a connection to it comes from it, as a browser elsewhere would.
        _run("ip", "-n", name, "addr", "add", f"{CLIENT}/32", "dev", "lo")
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)


def _vigie(env: dict[str, str], *args: str) -> str:
    result = subprocess.run(
        [*VIGIE, *args], env=env, capture_output=True, text=True, timeout=300, check=False
    )
    if result.returncode != 0:
        raise AssertionError(f"vigie {args[0]} exited {result.returncode}\n{result.stderr}")
    return result.stdout


def _wait_for(
    namespace: str, address: str, port: int, host: str, process: subprocess.Popen[bytes], log: Path
) -> None:
    """Until an HTTP request for `host` to address:port answers inside the namespace."""
    probe = (
        "import http.client\n"
        f"conn = http.client.HTTPConnection({address!r}, {port}, timeout=2)\n"
        f"conn.request('GET', '/health', headers={{'Host': {host!r}}})\n"
        "conn.getresponse()\n"
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"{log.name} exited {process.returncode}\n{log.read_text()}")
        done = subprocess.run(
            ["ip", "netns", "exec", namespace, sys.executable, "-c", probe],
            capture_output=True,
            timeout=30,
            check=False,
        )
        if done.returncode == 0:
            return
        time.sleep(0.3)
    raise AssertionError(f"{address}:{port} never answered\n{log.read_text()}")


def _stop(process: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, 15)
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, 9)
        process.wait()


def test_a_doctor_reads_a_document_through_the_shipped_nginx_site(tmp_path: Path) -> None:
    nginx = nginx_binary()
    missing = [
        what
        for what, there in (
            ("nginx", bool(nginx)),
            ("chromium", CHROMIUM.exists()),
            ("ip", bool(shutil.which("ip"))),
        )
        if not there
    ]
    if missing or os.geteuid() != 0:
        reason = f"needs root and {', '.join(missing) or 'nothing else'} (.ci/run installs them)"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    # The installation: production mode with deploy/vigie.env.example's settings.
    env = {
        **_base_env(tmp_path / "home"),
        "VIGIE_MODE": "production",
        "VIGIE_ALLOWED_HOSTS": PORTAL,
        "VIGIE_CSRF_TRUSTED_ORIGINS": f"https://{PORTAL}",
        "VIGIE_TLS": "true",
        # A clinic that accepts the authenticator's codes for doctors (production's default
        # would first ask this new doctor to register a passkey).
        "VIGIE_SIGNIN_METHODS": "doctor=password_totp",
    }
    _vigie(env, "keys", "init")
    _vigie(env, "migrate", "--no-input")
    password, pdf = secrets.token_urlsafe(16), small_pdf()
    (tmp_path / "document.pdf").write_bytes(pdf)
    args = tmp_path / "setup.json"
    args.write_text(json.dumps({"password": password, "pdf": str(tmp_path / "document.pdf")}))
    out = _vigie(env, "shell", "--no-imports", "-c", SETUP.format(args=str(args), mark=MARK))
    facts = json.loads(next(x for x in out.splitlines() if x.startswith(MARK))[len(MARK) :])
    unit = (REPO / "deploy/systemd/vigie-web.service").read_text(encoding="utf-8")
    exec_start = next(x for x in unit.splitlines() if x.startswith("ExecStart="))
    serve_args = exec_start.split("/opt/vigie/bin/vigie ", 1)[1].split()
    assert serve_args[:5] == ["serve", "--host", "127.0.0.1", "--port", "8000"], exec_start

    site = (REPO / "deploy/nginx/vigie.conf").read_text(encoding="utf-8")
    conf = nginx_site(tmp_path, site)
    wrapper = tmp_path / "chromium-in-namespace"
    with _namespace() as namespace:
        in_namespace = ["ip", "netns", "exec", namespace]
        serve_log, nginx_log = tmp_path / "vigie-serve.log", tmp_path / "nginx.log"
        with serve_log.open("wb") as log:
            vigie = subprocess.Popen(
                [*in_namespace, *VIGIE, *serve_args],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        with nginx_log.open("wb") as log:
            proxy = subprocess.Popen(
                [*in_namespace, nginx, "-p", str(tmp_path), "-e", str(tmp_path / "error.log"),
                 "-c", str(conf), "-g", "daemon off;"],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        try:
            _wait_for(namespace, "127.0.0.1", 8000, PORTAL, vigie, serve_log)
            _wait_for(namespace, CLIENT, 80, PORTAL, proxy, nginx_log)
            wrapper.write_text(
                f'#!/bin/sh\nexec ip netns exec {namespace} {CHROMIUM} "$@"\n', encoding="utf-8"
            )
            wrapper.chmod(0o700)
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(
                    executable_path=str(wrapper),
                    headless=True,
                    args=[
                        "--headless",
                        "--no-sandbox",
                        "--disable-gpu",
                        "--disable-background-networking",
                        f"--host-resolver-rules=MAP {PORTAL} {CLIENT}",
                    ],
                )
                try:
                    context = browser.new_context(
                        ignore_https_errors=True,  # the test's own self-signed certificate
                        extra_http_headers={"X-Forwarded-For": FORGED},
                    )
                    page = context.new_page()
                    # Plain HTTP: only the redirect to HTTPS, then the login page.
                    page.goto(f"http://{PORTAL}/")
                    assert page.url.startswith(f"https://{PORTAL}/accounts/login/"), page.url
                    page.fill("input[name=username]", "dr.proxy")
                    page.fill("input[name=password]", password)
                    # Enter, as a person would: the page's first button is the language's.
                    page.press("input[name=password]", "Enter")
                    page.wait_for_url("**/accounts/verify/**")
                    code = "input[autocomplete=one-time-code]"
                    page.fill(code, _totp(facts["totp_key"]))
                    page.press(code, "Enter")
                    page.wait_for_url(f"https://{PORTAL}/")
                    session = [c for c in context.cookies() if c["name"] == "sessionid"]
                    assert len(session) == 1, context.cookies()
                    assert session[0]["secure"]
                    assert session[0]["httpOnly"]
                    # From the page, as its viewer does: same origin, its cookies.
                    got = page.evaluate(FETCH, f"/documents/{facts['document']}/content")
                    assert got["status"] == 200, got
                    assert base64.b64decode(got["body"]) == pdf
                    assert "max-age=" in got["hsts"]
                    assert got["cache"].startswith("no-store"), got
                finally:
                    browser.close()
            # A scanner asking by IP address: no answer over HTTP, no certificate over TLS.
            scanned = subprocess.run(
                [*in_namespace, sys.executable, "-c", SCANNER.format(address=CLIENT)],
                capture_output=True,
                text=True,
                timeout=60,
                check=True,
            )
            assert scanned.stdout.split() == ["http:RemoteDisconnected", "https:SSLError"]
        finally:
            _stop(proxy)
            _stop(vigie)
    out = _vigie(env, "shell", "--no-imports", "-c", READ_EVENTS.format(mark=MARK))
    reads = json.loads(next(x for x in out.splitlines() if x.startswith(MARK))[len(MARK) :])
    # The browser's address: not nginx's (127.0.0.1), not the one it forged.
    assert reads == [[CLIENT, "success"]], reads


def _totp(key_hex: str) -> str:
    from django_otp.oath import totp

    return f"{totp(bytes.fromhex(key_hex)):06d}"
