"""Concurrent guesses against a real `vigie serve` (several workers, several threads each).

The lockout used to check the lock, verify, then count: 40 concurrent wrong codes had 19
verified against a limit of 5. Here each test fires 40 requests at once and counts what the
server really verified, with a counter independent of Vigie's own bookkeeping: a
sitecustomize module (on the server's PYTHONPATH only) that appends a line to a file each
time a password hash or a TOTP code is actually checked.
"""

from __future__ import annotations

import http.client
import json
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from urllib.parse import urlencode, urlsplit

import pytest

from tests.browser.live import Login, Server, free_port, http_get, totp_at
from tests.conftest import VIGIE, System

pytestmark = pytest.mark.slow

WORKERS, THREADS, BURST = 2, 8, 40
LIMIT = 5  # VIGIE_LOCKOUT_FAILURES: codes per account, attempts per address, per window
FREE, FIRST_WAIT, MAX_WAIT = 3, 5, 120  # the account's password delay (settings defaults)

_COUNTER = """
import os

_LOG = os.environ.get("VIGIE_TEST_VERIFY_LOG")
if _LOG:
    def _note(kind):
        fd = os.open(_LOG, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, (kind + "\\n").encode())
        finally:
            os.close(fd)

    from django.contrib.auth import hashers
    from django_otp import oath

    _password = hashers.Argon2PasswordHasher.verify
    _code = oath.TOTP.verify

    def _verify_password(self, password, encoded):
        _note("password")
        return _password(self, password, encoded)

    def _verify_code(self, token, tolerance=0, min_t=None):
        _note("code")
        return _code(self, token, tolerance, min_t)

    hashers.Argon2PasswordHasher.verify = _verify_password
    oath.TOTP.verify = _verify_code
"""

_MARK = "@@LOCKOUT@@"


class Counted:
    """A `vigie serve` whose password and code checks are counted in a file."""

    def __init__(self, system: System, tmp_path: Path) -> None:
        hooks = tmp_path / "hooks"
        hooks.mkdir()
        (hooks / "sitecustomize.py").write_text(_COUNTER)
        self.log = tmp_path / "verified.log"
        self.system = system
        port = free_port()
        env = {
            **system.env,
            "PYTHONPATH": str(hooks),
            "VIGIE_TEST_VERIFY_LOG": str(self.log),
            # Loopback is the proxy: each request names its client in X-Forwarded-For.
            "VIGIE_TRUSTED_PROXIES": "127.0.0.1",
        }
        self.base_url = f"http://127.0.0.1:{port}"
        out = (tmp_path / "serve.log").open("wb")
        argv = ["serve", "--host", "127.0.0.1", "--port", str(port)]
        argv += ["--workers", str(WORKERS), "--threads", str(THREADS)]
        process = subprocess.Popen(
            [*VIGIE, *argv],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        self.server = Server(base_url=self.base_url, process=process, log=tmp_path / "serve.log")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert process.poll() is None, self.server.log_text()
            try:
                if http_get(self.base_url, "/health", timeout=2)[0] == 200:
                    break
            except OSError:
                pass
            time.sleep(0.2)
        else:
            self.server.stop()
            raise AssertionError("vigie serve did not answer /health in 60 s")

    def verified(self, kind: str) -> int:
        if not self.log.exists():
            return 0
        return self.log.read_text().split().count(kind)

    def audit_count(self, action: str, **lookups: str) -> int:
        code = (
            "from vigie.audit.models import AuditEvent\n"
            f"q = AuditEvent.objects.filter(action={action!r}, **{lookups!r})\n"
            f"print({_MARK!r} + str(q.count()))\n"
        )
        out = self.system.run("shell", "--no-imports", "-c", code).stdout
        return int(next(line for line in out.splitlines() if line.startswith(_MARK))[len(_MARK) :])


def _doctor(system: System, username: str) -> Login:
    code = f"""
import json, secrets
from base64 import b32encode
from django_otp.plugins.otp_totp.models import TOTPDevice
from vigie.accounts.models import Role, User
password = secrets.token_urlsafe(16)
user = User(username={username!r}, first_name="Test", last_name={username!r}, role=Role.DOCTOR)
user.set_password(password)
user.save()
device = TOTPDevice.objects.create(user=user, name="authenticator", confirmed=True)
secret = b32encode(device.bin_key).decode("ascii")
print({_MARK!r} + json.dumps([password, secret]))
"""
    out = system.run("shell", "--no-imports", "-c", code).stdout
    line = next(line for line in out.splitlines() if line.startswith(_MARK))
    password, secret = json.loads(line[len(_MARK) :])
    return Login(username=username, password=password, role="doctor", totp_secret=secret)


class Browser:
    """Cookies and a CSRF token, then plain POSTs that name their client address."""

    def __init__(self, base_url: str, address: str) -> None:
        parts = urlsplit(base_url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.origin = base_url
        self.address = address
        self.cookies: dict[str, str] = {}
        self.token = ""

    def send(
        self,
        method: str,
        path: str,
        form: dict[str, str] | None = None,
        address: str = "",
        keep_cookies: bool = False,
    ) -> tuple[int, dict[str, str], str]:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=60)
        headers = {
            "Cookie": "; ".join(f"{k}={v}" for k, v in self.cookies.items()),
            "X-Forwarded-For": address or self.address,
        }
        body = None
        if form is not None:
            body = urlencode({"csrfmiddlewaretoken": self.token, **form})
            headers["Content-Type"] = "application/x-www-form-urlencoded"
            headers["Origin"] = self.origin
            headers["Referer"] = self.origin + path
        try:
            conn.request(method, path, body=body, headers=headers)
            response = conn.getresponse()
            text = response.read().decode("utf-8", "replace")
            answer = {k.lower(): v for k, v in response.getheaders()}
            # Requests of a burst leave the jar alone: they all carry the same cookies.
            for name, value in response.getheaders() if keep_cookies else []:
                if name.lower() == "set-cookie":
                    key, _, rest = value.partition("=")
                    self.cookies[key.strip()] = rest.split(";")[0]
        finally:
            conn.close()
        return response.status, answer, text

    def open(self, path: str) -> None:
        status, _, text = self.send("GET", path, keep_cookies=True)
        assert status == 200, (path, status)
        marker = 'name="csrfmiddlewaretoken" value="'
        start = text.index(marker) + len(marker)
        self.token = text[start : text.index('"', start)]

    def log_in(self, user: Login) -> tuple[int, dict[str, str]]:
        self.open("/accounts/login/")
        status, headers, _ = self.send(
            "POST",
            "/accounts/login/",
            {"username": user.username, "password": user.password},
            keep_cookies=True,
        )
        return status, headers


Answer = tuple[int, dict[str, str], str]


def _burst(send: Sequence[Callable[[], Answer]]) -> tuple[list[Answer], float]:
    """Run the callables all at once (a barrier releases them together)."""
    barrier = threading.Barrier(len(send))

    def fire(call: Callable[[], Answer]) -> Answer:
        barrier.wait()
        return call()

    started = time.monotonic()
    with ThreadPoolExecutor(len(send)) as pool:
        answers = list(pool.map(fire, send))
    return answers, time.monotonic() - started


def _allowed_by_delay(seconds: float) -> int:
    """How many password attempts the account's delay schedule lets through in `seconds`."""
    at, count, wait = 0.0, 0, 0.0
    while at <= seconds:
        count += 1
        wait = 0.0 if count < FREE else min(FIRST_WAIT * 2 ** (count - FREE), MAX_WAIT)
        at += wait
    return count


@pytest.fixture
def counted(system: System, tmp_path: Path) -> Iterator[Counted]:
    served = Counted(system, tmp_path)
    yield served
    served.server.stop()


def test_attack_concurrent_wrong_codes_are_verified_beyond_the_limit(counted: Counted) -> None:
    victim = _doctor(counted.system, "dr.codes")
    browser = Browser(counted.base_url, "192.0.2.10")
    assert browser.log_in(victim)[0] == 302
    browser.open("/accounts/verify/")
    before = counted.verified("code")
    assert victim.totp_secret is not None
    step = int(time.time()) // 30
    # Never the right code by chance: none of the steps the device would accept now or soon.
    near = {totp_at(victim.totp_secret, step + d) for d in range(-2, 4)}
    wrong = [f"{n:06d}" for n in range(100000, 999999, 9973) if f"{n:06d}" not in near][:BURST]

    answers, _ = _burst(
        [partial(browser.send, "POST", "/accounts/verify/", {"code": code}) for code in wrong]
    )
    statuses = [status for status, _, _ in answers]
    checked = counted.verified("code") - before
    print(f"codes: {checked} checked, answers {sorted(statuses)}")
    # Once the session is flushed by a refusal, later requests of the burst find no session
    # and are sent back to the login page: refused too, and nothing was checked for them.
    assert all(
        status in (200, 429) or (status == 302 and headers["location"].startswith("/accounts/"))
        for status, headers, _ in answers
    ), statuses
    assert checked <= LIMIT, f"{checked} wrong codes checked against a limit of {LIMIT}"
    assert statuses.count(200) <= LIMIT, statuses
    assert statuses.count(429) >= 1, statuses
    assert counted.audit_count("mfa.failure") <= LIMIT


def test_attack_concurrent_wrong_passwords_are_verified_beyond_the_delay(
    counted: Counted,
) -> None:
    target = _doctor(counted.system, "dr.target")
    # From forty addresses at once (a botnet): the address limit never applies, only the
    # account's own counter stands between the guesses and the password hash.
    browser = Browser(counted.base_url, "192.0.2.20")
    browser.open("/accounts/login/")
    before = counted.verified("password")
    guesses = [
        partial(
            browser.send,
            "POST",
            "/accounts/login/",
            {"username": target.username, "password": f"wrong guess {i}"},
            address=f"203.0.113.{i + 1}",
        )
        for i in range(BURST)
    ]
    answers, took = _burst(guesses)
    statuses = [status for status, _, _ in answers]
    checked = counted.verified("password") - before
    allowed = _allowed_by_delay(took)
    print(f"passwords: {checked} checked in {took:.2f} s (allowed {allowed}), {sorted(statuses)}")
    assert checked <= allowed, (
        f"{checked} passwords checked in {took:.1f} s; delay allows {allowed}"
    )
    assert statuses.count(200) == checked, statuses
    assert statuses.count(429) == BURST - checked, statuses
    assert counted.audit_count("login.failure", extra__username=target.username) == checked

    # The doctor, from their own address, is told how long to wait, waits, and gets in:
    # slowed down by the outsider, never locked out for the cool-off.
    doctor = Browser(counted.base_url, "192.0.2.50")
    status, headers = doctor.log_in(target)
    if status == 429:
        wait = int(headers["retry-after"])
        assert wait <= MAX_WAIT
        time.sleep(wait)  # as the answer says; not a timing assertion
        status, headers = doctor.log_in(target)
    assert status == 302, status
    assert headers["location"].startswith("/accounts/verify/")
    doctor.open("/accounts/verify/")
    assert target.totp_secret is not None
    code = totp_at(target.totp_secret, int(time.time()) // 30)
    status, headers, _ = doctor.send("POST", "/accounts/verify/", {"code": code})
    assert status == 302, status
    assert not headers["location"].startswith("/accounts/"), headers["location"]


def test_concurrent_spraying_from_one_address_stays_within_its_limit(
    counted: Counted,
) -> None:
    # Spraying: one address, forty identifiers at once (none of them need exist). Main's
    # django-axes held here (4 checked): a guard against regressions, not an attack test.
    browser = Browser(counted.base_url, "198.51.100.9")
    browser.open("/accounts/login/")
    answers, _ = _burst(
        [
            partial(
                browser.send,
                "POST",
                "/accounts/login/",
                {"username": f"guess{i}", "password": "x" * 12},
            )
            for i in range(BURST)
        ]
    )
    statuses = [status for status, _, _ in answers]
    assert statuses.count(200) <= LIMIT, statuses
    assert statuses.count(429) == BURST - statuses.count(200), statuses
    checked = counted.audit_count("login.failure", source_ip="198.51.100.9")
    print(f"spraying: {checked} checked, answers {sorted(statuses)}")
    assert checked == statuses.count(200)
