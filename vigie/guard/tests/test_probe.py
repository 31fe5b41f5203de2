"""The outside-in probe, with the real fetcher run as a subprocess (as run_round runs it)
against real servers on 127.0.0.1: Vigie itself, a server leaking PDFs, a login page
without no-store, a certificate about to expire, a closed port."""

from __future__ import annotations

import datetime as dt
import http.server
import shlex
import socket
import ssl
import stat
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar

import pytest

from vigie.alerts.models import Alert
from vigie.audit.models import AuditEvent
from vigie.audit.testing import audit_committing  # noqa: F401  (a pytest fixture)
from vigie.guard import fetch, lockdown, probe, probe_auth
from vigie.guard.models import Canary, ProbeResult
from vigie.guard.policy import Policy
from vigie.lib.testcerts import self_signed as make_certificate
from vigie.records.tests.factories import make_document, make_patient

PDF = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\n%%EOF\n"
Verdict = ProbeResult.Verdict


@pytest.fixture(autouse=True)
def _probe_env(settings) -> None:
    settings.VIGIE_AUDIT_GROUP_COMMIT = False
    # The live server speaks plain HTTP; production's HTTPS redirect would answer 301s.
    settings.SECURE_SSL_REDIRECT = False


def policy_for(*base_urls: str, **fields: Any) -> Policy:
    return Policy(listeners=(), maintenance_ports=(), probe_base_urls=base_urls, **fields)


class _Handler(http.server.BaseHTTPRequestHandler):
    seen: ClassVar[list[tuple[str, dict[str, str]]]]

    def log_message(self, format: str, *args: Any) -> None:  # quiet test output
        pass

    def do_GET(self) -> None:
        self.seen.append((self.path, dict(self.headers.items())))
        status, headers, body = self.answer()
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def answer(self) -> tuple[int, dict[str, str], bytes]:
        raise NotImplementedError


class LeakyHandler(_Handler):
    """The incident: a server handing out PDFs on every path, to anyone."""

    def answer(self) -> tuple[int, dict[str, str], bytes]:
        # Served as text/plain on purpose: the bytes, not the label, make it a document.
        return 200, {"Content-Type": "text/plain"}, PDF


class CacheableLoginHandler(_Handler):
    """A portal that refuses everything but forgets no-store on its login page."""

    def answer(self) -> tuple[int, dict[str, str], bytes]:
        if self.path.startswith("/accounts/login/"):
            return 200, {"Content-Type": "text/html", "X-Robots-Tag": "noindex"}, b"<form>"
        if self.path == "/robots.txt":
            return 200, {"Content-Type": "text/plain"}, b"User-agent: *\nDisallow: /\n"
        return 404, {"Content-Type": "text/plain"}, b"not found"


class SafeHandler(CacheableLoginHandler):
    def answer(self) -> tuple[int, dict[str, str], bytes]:
        status, headers, body = super().answer()
        return status, {**headers, "Cache-Control": "no-store"}, body


class CookieRedirectHandler(_Handler):
    def answer(self) -> tuple[int, dict[str, str], bytes]:
        if self.path == "/pdf":
            return 200, {"Content-Type": "application/pdf"}, PDF
        return 302, {"Location": "/pdf", "Set-Cookie": "sessionid=stolen; Path=/"}, b""


@contextmanager
def serve(
    handler: type[_Handler], context: ssl.SSLContext | None = None
) -> Iterator[tuple[str, list[tuple[str, dict[str, str]]]]]:
    seen: list[tuple[str, dict[str, str]]] = []
    bound = type("Bound", (handler,), {"seen": seen})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), bound)
    if context is not None:
        server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    scheme = "https" if context else "http"
    try:
        yield f"{scheme}://127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def self_signed(tmp_path: Path, *, not_after: dt.datetime) -> tuple[ssl.SSLContext, Path]:
    cert_file, key_file = make_certificate(
        tmp_path,
        "127.0.0.1",
        not_before=dt.datetime.now(dt.UTC) - dt.timedelta(days=30),
        not_after=not_after,
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    return context, cert_file


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def by_category(outcome: probe.ProbeRound) -> Callable[[str], list[ProbeResult]]:
    return lambda category: [r for r in outcome.results if r.category == category]


# --- Vigie itself, seen from outside ------------------------------------------------------


@pytest.mark.usefixtures("audit_committing", "vault_home")
def test_probe_of_a_safe_portal_finds_no_leak(live_server, settings, tmp_path) -> None:
    # Django's test live server (not Vigie) serves MEDIA_ROOT at MEDIA_URL, outside every
    # middleware; unset, that is the working directory at every path: this very probe found
    # the checkout's /.git/config there. Vigie serves no media: point it at nothing.
    settings.MEDIA_ROOT = str(tmp_path / "no-media")
    patient = make_patient("SONDE")
    for _ in range(3):
        make_document(patient, PDF)
    decoy = make_patient("LEURRE")
    make_document(decoy, PDF)
    Canary.objects.create(patient=decoy, label="decoy")

    outcome = probe.run_round(policy_for(live_server.url, probe_sample_size=3))

    pick = by_category(outcome)
    assert outcome.leaks == []
    assert outcome.errors == []
    assert [r.verdict for r in pick("login")] == [Verdict.OK]
    assert [r.verdict for r in pick("robots")] == [Verdict.OK]
    # Every real and decoy record URL was really asked for, and refused.
    assert len(pick("document")) == 9
    assert len(pick("decoy")) == 2
    assert len(pick("patient")) == 1  # the decoy patient is asked for as a decoy only
    for category in ("document", "decoy", "patient", "storage", "admin", "api", "audit"):
        for result in pick(category):
            assert result.verdict == Verdict.OK, (result.url, result.detail)
            # 302 to the login page, 401 for the API; the test server's static handler
            # refuses "/static/../" with a 500 (SuspiciousFileOperation): never a 200.
            assert result.status in (302, 401, 404, 500), (result.url, result.status)
    assert ProbeResult.objects.filter(round_id=outcome.round_id).count() == len(outcome.results)
    assert not lockdown.is_locked_down()
    assert not Alert.objects.filter(kind="guard.probe.exposure").exists()


# --- exposures ----------------------------------------------------------------------------


@pytest.mark.django_db
def test_probe_catches_a_server_leaking_pdfs_and_locks_down() -> None:
    with serve(LeakyHandler) as (base, seen):
        outcome = probe.run_round(policy_for(base, lockdown_on_exposure=True))

    assert outcome.leaks
    leaked = {r.url for r in outcome.leaks}
    assert f"{base}/admin/" in leaked
    assert f"{base}/keyring/keyring.json" in leaked
    assert all("PDF bytes" in r.detail for r in outcome.leaks)
    alert = Alert.objects.get(kind="guard.probe.exposure")
    assert alert.severity == "critical"
    assert base in alert.summary
    assert "PDF bytes" in alert.summary
    assert lockdown.is_locked_down()
    assert outcome.lockdown_engaged
    event = AuditEvent.objects.get(action="guard.probe.exposure")
    assert event.extra["leak_count"] == len(outcome.leaks)
    # Every request carried a valid probe signature, so decoy tripwires know it was us.
    assert seen
    for path, headers in seen:
        assert probe_auth.is_valid(path.split("?")[0], headers[probe_auth.HEADER]), path


@pytest.mark.django_db
def test_probe_reports_a_leak_without_lockdown_when_the_policy_says_so() -> None:
    with serve(LeakyHandler) as (base, _seen):
        outcome = probe.run_round(policy_for(base, lockdown_on_exposure=False))
    assert outcome.leaks
    assert Alert.objects.filter(kind="guard.probe.exposure", severity="critical").exists()
    assert not lockdown.is_locked_down()


@pytest.mark.django_db
def test_probe_never_follows_a_redirect_or_keeps_a_cookie() -> None:
    with serve(CookieRedirectHandler) as (base, seen):
        answer = probe._run_fetcher(
            policy_for(base),
            {
                "requests": [
                    {"url": f"{base}/a", "headers": {}},
                    {"url": f"{base}/b", "headers": {}},
                ]
            },
        )
    first, second = answer["results"]
    assert first["status"] == 302
    assert first["headers"]["location"] == "/pdf"
    assert first["flags"] == []
    assert second["status"] == 302
    assert sorted(path for path, _headers in seen) == ["/a", "/b"]
    assert all("Cookie" not in headers for _path, headers in seen)


# --- warnings -----------------------------------------------------------------------------


@pytest.mark.django_db
def test_probe_warns_when_the_login_page_may_be_cached() -> None:
    with serve(CacheableLoginHandler) as (base, _seen):
        outcome = probe.run_round(policy_for(base))

    assert outcome.leaks == []
    (login,) = by_category(outcome)("login")
    assert login.verdict == Verdict.WARNING
    assert "Cache-Control: no-store" in login.detail
    assert "X-Robots-Tag" not in login.detail
    alert = Alert.objects.get(kind="guard.probe.warning")
    assert alert.severity == "warning"
    assert "no-store" in alert.summary


@pytest.mark.django_db
def test_probe_warns_of_a_certificate_expiring_in_five_days(tmp_path) -> None:
    expires = dt.datetime.now(dt.UTC) + dt.timedelta(days=5, hours=2)
    context, ca_file = self_signed(tmp_path, not_after=expires)
    with serve(SafeHandler, context) as (base, _seen):
        outcome = probe.run_round(policy_for(base, probe_ca_file=str(ca_file)))

    pick = by_category(outcome)
    (tls,) = pick("tls")
    assert tls.verdict == Verdict.WARNING
    assert "5 days left" in tls.detail
    assert "fails verification" not in tls.detail
    # The certificate verified against the CA file, so the pages were judged as usual.
    assert [r.verdict for r in pick("login")] == [Verdict.OK]
    assert outcome.leaks == []
    assert Alert.objects.filter(kind="guard.probe.warning", summary__contains="5 days").exists()


@pytest.mark.django_db
def test_probe_sees_a_leak_behind_a_certificate_that_fails_verification(tmp_path) -> None:
    context, _ca_file = self_signed(
        tmp_path, not_after=dt.datetime.now(dt.UTC) - dt.timedelta(days=2)
    )
    # No CA file: the certificate is both untrusted and expired; the leak counts anyway.
    with serve(LeakyHandler, context) as (base, _seen):
        outcome = probe.run_round(policy_for(base, lockdown_on_exposure=True))

    (tls,) = by_category(outcome)("tls")
    assert tls.verdict == Verdict.WARNING
    assert "fails verification" in tls.detail
    assert "expired" in tls.detail
    assert outcome.leaks
    assert lockdown.is_locked_down()


# --- a closed perimeter, the vantage point, a broken fetcher ---------------------------------


@pytest.mark.django_db
def test_a_closed_port_is_unreachable_not_a_leak() -> None:
    port = free_port()
    outcome = probe.run_round(policy_for(f"http://127.0.0.1:{port}"))

    assert outcome.results
    assert {r.verdict for r in outcome.results} == {Verdict.UNREACHABLE}
    assert outcome.leaks == []
    assert not Alert.objects.filter(kind__startswith="guard.probe").exists()
    assert probe.port_closed_from_outside(policy_for(f"http://127.0.0.1:{port}"), port) is True


@pytest.mark.django_db
def test_port_closed_from_outside_is_false_while_something_listens() -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        assert probe.port_closed_from_outside(policy_for("https://127.0.0.1"), port) is False
    assert probe.port_closed_from_outside(policy_for(), port) is None


@pytest.mark.django_db
def test_the_fetch_runs_through_the_vantage_prefix(tmp_path) -> None:
    mark = tmp_path / "vantage-ran"
    wrapper = tmp_path / "vantage"
    wrapper.write_text(f'#!/bin/sh\nprintf "%s\\n" "$1" >> "{mark}"\nexec "$@"\n')
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
    vantage = {"probe_vantage": (str(wrapper),)}

    with serve(LeakyHandler) as (base, _seen):
        outcome = probe.run_round(policy_for(base, lockdown_on_exposure=False, **vantage))
    port = free_port()
    closed = probe.port_closed_from_outside(policy_for(f"http://127.0.0.1:{port}", **vantage), port)

    assert outcome.leaks
    assert closed is True
    # Both calls went through the wrapper, which ran the vantage's own python3.
    assert mark.read_text().splitlines() == ["python3", "python3"]


def test_an_ssh_vantage_gets_the_fetcher_as_one_quoted_remote_command() -> None:
    # ssh joins its arguments into a shell line on the far side: unquoted, the fetcher's
    # source would be cut at its first space or quote.
    command = probe._fetcher_command(policy_for(probe_vantage=("ssh", "probe@vps.example")))
    assert command[:2] == ["ssh", "probe@vps.example"]
    assert len(command) == 3
    python, isolated, dash_c, source = shlex.split(command[2])
    assert (python, isolated, dash_c) == ("python3", "-I", "-c")
    assert source == Path(fetch.__file__).read_text(encoding="utf-8")


@pytest.mark.django_db
def test_a_broken_vantage_gives_error_results_not_an_exception() -> None:
    outcome = probe.run_round(policy_for("http://127.0.0.1:9", probe_vantage=("false",)))

    assert outcome.results
    assert {r.verdict for r in outcome.results} == {Verdict.ERROR}
    assert outcome.leaks == []
    assert Alert.objects.filter(kind="guard.probe.failed", severity="warning").exists()
    assert ProbeResult.objects.filter(verdict=Verdict.ERROR).count() == len(outcome.results)


@pytest.mark.django_db
def test_old_probe_results_are_pruned(monkeypatch) -> None:
    monkeypatch.setattr(probe, "KEEP_ROWS", 10)
    old = probe.run_round(
        policy_for(f"http://127.0.0.1:{free_port()}"),
        now=dt.datetime.now(dt.UTC) - dt.timedelta(days=8),
    )
    assert old.results
    assert not ProbeResult.objects.filter(round_id=old.round_id).exists()
    probe.run_round(policy_for(f"http://127.0.0.1:{free_port()}"))
    assert ProbeResult.objects.count() == 10


# --- the fetcher's own judgement of bytes --------------------------------------------------


@pytest.mark.parametrize(
    ("body", "flag"),
    [
        (PDF, "pdf"),
        (b"\n\n%PDF-1.7 hidden after a preamble", "pdf"),
        (b"\0" * 128 + b"DICM" + b"\0" * 16, "dicom"),
        (b"\x89PNG\r\n\x1a\n....", "png"),
        (b"\xff\xd8\xff\xe0JFIF", "jpeg"),
        (b"PK\x03\x04zipped", "zip"),
        (b"MSH|^~\\&|LAB|CLINIC", "hl7"),
        (b"<html><title>Index of /blobs</title>", "directory_listing"),
    ],
)
def test_fetcher_recognises_document_bytes(body: bytes, flag: str) -> None:
    assert flag in fetch.document_flags(body)


def test_fetcher_does_not_flag_an_ordinary_page() -> None:
    assert fetch.document_flags(b"<!DOCTYPE html><p>Login</p>") == []
