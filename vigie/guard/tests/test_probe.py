"""The outside-in probe, with the real fetcher run as a subprocess (as run_round runs it)
against real servers on 127.0.0.1: Vigie itself, a server leaking PDFs, a login page
without no-store, a certificate about to expire, a closed port."""

from __future__ import annotations

import datetime as dt
import http.server
import json
import shlex
import socket
import ssl
import stat
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any, ClassVar

import pytest

from vigie.alerts.models import Alert
from vigie.audit.models import AuditEvent
from vigie.guard import (
    fetch,
    lockdown,
    probe,
    probe_auth,
    probe_judge,
    probe_outcome,
    probe_ports,
    probe_recheck,
    probe_requests,
    probe_vantage,
    tripwire,
)
from vigie.guard.models import Canary, MaintenanceWindow, ProbeResult
from vigie.guard.policy import Policy, parse_policy
from vigie.lib.testing import self_signed as make_certificate
from vigie.records.testing import make_document, make_patient

PDF = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\n%%EOF\n"
Verdict = ProbeResult.Verdict


@pytest.fixture(autouse=True)
def _probe_env(settings) -> None:
    settings.VIGIE_AUDIT_GROUP_COMMIT = False
    # The live server speaks plain HTTP; production's HTTPS redirect would answer 301s.
    settings.SECURE_SSL_REDIRECT = False


@pytest.fixture(autouse=True)
def _no_host_scan(monkeypatch) -> None:
    # This machine's own services (a PostgreSQL on 5432, other test servers) are not the
    # subject here: scan only the ports a test names. raising=False: the fixture must not
    # be what fails on code without a port scan.
    monkeypatch.setattr(probe_ports, "ports_to_scan", lambda policy: {}, raising=False)


@pytest.fixture(autouse=True)
def _quick_recheck(monkeypatch) -> None:
    # The wait before asking again leaves a real guard time to repair its table; here the
    # "repair" is the fake fetcher's next answer.
    monkeypatch.setattr(probe_recheck, "RECHECK_SECONDS", 0.01, raising=False)


def policy_for(*base_urls: str, **fields: Any) -> Policy:
    # Most tests judge what a portal that answers from outside serves: a public portal.
    # An internal one answering at all is the exposure (tests below say so explicitly).
    fields.setdefault("exposure_mode", "public")
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
            page = b'<form method="post" action="/accounts/login/">'
            return 200, {"Content-Type": "text/html", "X-Robots-Tag": "noindex"}, page
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


def by_category(outcome: probe_outcome.ProbeRound) -> Callable[[str], list[ProbeResult]]:
    return lambda category: [r for r in outcome.results if r.category == category]


# --- Vigie itself, seen from outside ------------------------------------------------------


@pytest.mark.usefixtures("audit_committing", "vault_home")
def test_probe_of_a_safe_portal_finds_no_leak(
    live_server, settings, tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Django's live server shares one in-memory SQLite connection among its threads: two
    # decoy requests at once interleave their transactions there ("cannot start a
    # transaction within a transaction"), the nonce cannot be spent and the probe's own
    # request alarms. Vigie's server has a connection per thread; here, one request at a time.
    run_fetcher = probe_vantage.run_fetcher
    monkeypatch.setattr(
        probe_vantage, "run_fetcher", lambda policy, job: run_fetcher(policy, {**job, "workers": 1})
    )
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
    tripwire.decoys.invalidate()  # armed now, not after the index's refresh delay

    # Four documents in all: a sample of four names every one, the decoy's included.
    outcome = probe.run_round(policy_for(live_server.url, probe_sample_size=4))

    pick = by_category(outcome)
    assert outcome.leaks == []
    assert outcome.errors == []
    assert [r.verdict for r in pick("login")] == [Verdict.OK]
    assert [r.verdict for r in pick("robots")] == [Verdict.OK]
    # Every real and decoy record URL was really asked for, and refused; the decoy's
    # document in the same four forms as the others (viewer, content, download, embedded
    # report), its patient's two pages (record, lab history) like theirs.
    assert len(pick("document")) == 12
    assert len(pick("decoy")) == 6
    assert len(pick("patient")) == 2  # the decoy patient is asked for as a decoy only
    # The decoy's URLs were signed like the rest: the probe's touch raised no alarm.
    assert not Alert.objects.filter(kind="guard.canary.touched").exists()
    assert Canary.objects.get().touches == 0
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
    # Every request carried a valid probe signature for exactly the request received, so
    # decoy tripwires know it was us; and no two requests share a nonce.
    assert seen
    for path, headers in seen:
        # As Django reads the request line (percent escapes decoded, then re-escaped).
        verdict = probe_auth.check("GET", probe_auth.target_of(path), headers[probe_auth.HEADER])
        assert verdict == probe_auth.Check.VALID, (path, verdict)
    assert len({headers[probe_auth.HEADER].split(".")[2] for _, headers in seen}) == len(seen)


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
        answer = probe_vantage.run_fetcher(
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
    assert (
        probe_recheck.port_closed_from_outside(policy_for(f"http://127.0.0.1:{port}"), port) is True
    )


@pytest.mark.django_db
def test_port_closed_from_outside_is_false_while_something_listens() -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        assert (
            probe_recheck.port_closed_from_outside(policy_for("https://127.0.0.1"), port) is False
        )
    assert probe_recheck.port_closed_from_outside(policy_for(), port) is None


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
    closed = probe_recheck.port_closed_from_outside(
        policy_for(f"http://127.0.0.1:{port}", **vantage), port
    )

    assert outcome.leaks
    assert closed is True
    # Both calls went through the wrapper, which ran the vantage's own python3.
    assert mark.read_text().splitlines() == ["python3", "python3"]


def test_an_ssh_vantage_gets_the_fetcher_as_one_quoted_remote_command() -> None:
    # ssh joins its arguments into a shell line on the far side: unquoted, the fetcher's
    # source would be cut at its first space or quote.
    command = probe_vantage.fetcher_command(policy_for(probe_vantage=("ssh", "probe@vps.example")))
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


# --- being reachable is the exposure (issue 15) -------------------------------------------


class DirectoryHandler(_Handler):
    """`python3 -m http.server` started in a folder during maintenance: a listing."""

    def answer(self) -> tuple[int, dict[str, str], bytes]:
        page = b"<html><title>Directory listing for /</title><a href='notes.txt'>notes</a>"
        return 200, {"Content-Type": "text/html"}, page


def _facts(mode: str, **fields: Any) -> probe_ports.PortFacts:
    values: dict[str, Any] = {
        "guarded": frozenset({8443, 2575}),
        "portal": frozenset({443}),
        "outside": {22: "ssh"},
        "listening": {8443: "granian", 2575: "vigie", 22: "sshd", 8000: "python3"},
        "windows": frozenset(),
    }
    values.update(fields)
    return probe_ports.PortFacts(mode=mode, **values)


@pytest.mark.parametrize(
    ("mode", "port", "state", "verdict", "words"),
    [
        # internal: any connect that succeeds is the exposure, except declared ones.
        ("internal", 8443, "open", Verdict.LEAK, "granian"),
        ("internal", 2575, "open", Verdict.LEAK, "internal"),
        ("internal", 443, "open", Verdict.LEAK, "where outsiders reach the portal"),
        ("internal", 8000, "open", Verdict.LEAK, "python3"),
        ("internal", 3389, "open", Verdict.LEAK, "a service answers"),
        ("internal", 22, "open", Verdict.OK, "as declared (listener ssh)"),
        ("internal", 8443, "closed", Verdict.UNREACHABLE, "closed"),
        ("internal", 8443, "timeout", Verdict.UNREACHABLE, "timeout"),
        # public: the portal's own port may answer (its pages are judged one by one).
        ("public", 443, "open", Verdict.OK, "portal"),
        ("public", 22, "open", Verdict.OK, "as declared"),
        ("public", 8443, "open", Verdict.LEAK, "only the portal's port"),
        ("public", 8000, "open", Verdict.LEAK, "python3"),
        ("public", 6379, "closed", Verdict.UNREACHABLE, "closed"),
    ],
)
def test_port_verdicts_in_both_exposure_modes(
    mode: str, port: int, state: str, verdict: str, words: str
) -> None:
    got, detail = probe_ports.judge_port(port, state, _facts(mode))
    assert got == verdict, detail
    assert words in detail
    if got == Verdict.LEAK:
        assert f"port {port} accepts TCP connections from outside" in detail


def test_a_maintenance_window_makes_its_port_a_warning_not_a_leak() -> None:
    facts = _facts("internal", windows=frozenset({8443}))
    assert probe_ports.judge_port(8443, "open", facts)[0] == Verdict.WARNING
    # The window explains its own port only: anything else answering is still the exposure.
    assert probe_ports.judge_port(8000, "open", facts)[0] == Verdict.LEAK


def test_login_verdicts_in_both_exposure_modes() -> None:
    login = probe_requests.ProbeRequest("https://portal.example/accounts/login/", "login")
    portal_page = {
        "status": 200,
        "headers": {"x-robots-tag": "noindex", "cache-control": "no-store"},
        "expected": True,
    }
    assert probe_judge.judge(login, portal_page, mode="public")[0] == Verdict.OK
    assert probe_judge.judge(login, portal_page, mode="internal")[0] == Verdict.LEAK
    window = probe_judge.judge(login, portal_page, mode="internal", window_open=True)
    assert window[0] == Verdict.WARNING
    other = {**portal_page, "expected": False}
    verdict, detail = probe_judge.judge(login, other, mode="public")
    assert verdict == Verdict.LEAK
    assert "other than the portal's login page" in detail
    refused = {"status": None, "error": "connection refused", "error_kind": "refused"}
    assert probe_judge.judge(login, refused, mode="internal")[0] == Verdict.UNREACHABLE


def _internal_policy(base: str, **guard: Any) -> Policy:
    """The shipped default: exposure_mode unset means internal."""
    port = int(base.rsplit(":", 1)[1])
    return parse_policy(
        {
            "guard": {"lockdown_on_exposure": True, **guard},
            "listener": [
                {
                    "name": "portal",
                    "address": "0.0.0.0",
                    "port": port,
                    "exposure": "public",
                    "sources": ["192.168.10.0/24"],
                }
            ],
            "probe": {"base_urls": [base], "sample_size": 0},
        }
    )


@pytest.mark.django_db
def test_attack_perimeter_forwarding_an_internal_portal_is_a_critical_exposure() -> None:
    # The incident: the perimeter forwards the portal's port; the host changed nothing and
    # the portal answers its login page, safe in itself. Being reachable is the exposure.
    with serve(SafeHandler) as (base, _seen):
        outcome = probe.run_round(_internal_policy(base))

    port = int(base.rsplit(":", 1)[1])
    leaked = {r.url: r.detail for r in outcome.leaks}
    assert f"tcp://127.0.0.1:{port}" in leaked
    assert "internal" in leaked[f"tcp://127.0.0.1:{port}"]
    assert f"{base}/accounts/login/" in leaked
    alert = Alert.objects.get(kind="guard.probe.exposure")
    assert alert.severity == "critical"
    assert f"port {port}" in alert.summary
    assert lockdown.is_locked_down()
    event = AuditEvent.objects.get(action="guard.probe.exposure")
    assert f"tcp://127.0.0.1:{port}" in event.extra["urls"]


@pytest.mark.django_db
def test_it_refuses_a_port_opened_beyond_the_policy_reachable_from_outside() -> None:
    # The portal itself is closed from outside; a folder served during maintenance is not.
    closed_portal = f"http://127.0.0.1:{free_port()}"
    with serve(DirectoryHandler) as (other, _seen):
        port = int(other.rsplit(":", 1)[1])
        outcome = probe.run_round(
            _internal_policy(closed_portal, lockdown_on_exposure=False),
            ports={port: "python3", free_port(): ""},
        )

    (leak,) = outcome.leaks
    assert leak.url == f"tcp://127.0.0.1:{port}"
    assert leak.category == "port"
    assert "python3" in leak.detail
    assert "does not declare it reachable from outside" in leak.detail
    alert = Alert.objects.get(kind="guard.probe.exposure", severity="critical")
    assert f"port {port}" in alert.summary
    assert not lockdown.is_locked_down()
    (closed,) = [r for r in outcome.results if r.category == "ports"]
    assert closed.verdict == Verdict.UNREACHABLE
    assert "2 port(s) closed" in closed.detail


@pytest.mark.django_db
def test_a_port_declared_reachable_from_outside_raises_nothing() -> None:
    closed_portal = f"http://127.0.0.1:{free_port()}"
    with serve(DirectoryHandler) as (other, _seen):
        port = int(other.rsplit(":", 1)[1])
        policy = _internal_policy(closed_portal)
        listeners = (
            *policy.listeners,
            parse_policy(
                {
                    "listener": [
                        {"name": "ssh", "address": "0.0.0.0", "port": port, "exposure": "outside"}
                    ]
                }
            ).listeners[0],
        )
        outcome = probe.run_round(replace(policy, listeners=listeners), ports={port: "sshd"})

    assert outcome.leaks == []
    (row,) = [r for r in outcome.results if r.category == "port"]
    assert row.verdict == Verdict.OK
    assert "as declared (listener ssh)" in row.detail
    assert not lockdown.is_locked_down()


@pytest.mark.django_db
def test_public_mode_lets_only_the_portal_answer_and_only_as_the_portal() -> None:
    with serve(SafeHandler) as (base, _seen), serve(DirectoryHandler) as (other, _seen2):
        other_port = int(other.rsplit(":", 1)[1])
        public = replace(_internal_policy(base), exposure_mode="public")
        quiet = probe.run_round(public, ports={})
        noisy = probe.run_round(public, ports={other_port: ""})
        # A server that is not the portal, at the portal's address: a listing, not a login.
        impostor = probe.run_round(replace(public, probe_base_urls=(other,)), ports={})

    assert quiet.leaks == []
    assert [r.verdict for r in quiet.results if r.category == "port"] == [Verdict.OK]
    assert [r.url for r in noisy.leaks] == [f"tcp://127.0.0.1:{other_port}"]
    assert "only the portal's port may answer" in noisy.leaks[0].detail
    login = [r for r in impostor.leaks if r.category == "login"]
    assert login
    assert "other than the portal's login page" in login[0].detail


@pytest.mark.django_db
def test_an_open_maintenance_window_is_a_warning_until_it_ends() -> None:
    with serve(SafeHandler) as (base, _seen):
        policy = _internal_policy(base)
        port = int(base.rsplit(":", 1)[1])
        window = MaintenanceWindow.objects.create(
            who="Contractor",
            reason="test",
            source="203.0.113.7",
            port=port,
            ends_at=dt.datetime.now(dt.UTC) + dt.timedelta(hours=1),
        )
        during = probe.run_round(policy, ports={})
        locked_during = lockdown.is_locked_down()
        window.closed_at = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)
        window.save()
        after = probe.run_round(policy, ports={})

    assert during.leaks == []
    assert {r.category for r in during.warnings} >= {"port", "login"}
    assert not locked_during
    assert {r.category for r in after.leaks} >= {"port", "login"}
    assert lockdown.is_locked_down()


@pytest.mark.django_db
def test_the_vantage_point_learns_only_host_and_port_pairs(tmp_path) -> None:
    job_copy = tmp_path / "job.json"
    wrapper = tmp_path / "vantage"
    wrapper.write_text(f'#!/bin/sh\ntee "{job_copy}" | "$@"\n')
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
    portal = f"http://127.0.0.1:{free_port()}"
    policy = replace(_internal_policy(portal), probe_vantage=(str(wrapper),))

    probe.run_round(policy, ports={9999: "secret-daemon", 22: "sshd", 8000: ""})

    job = json.loads(job_copy.read_text())
    assert set(job) == {"connect", "connect_timeout", "requests", "timeout", "deadline", "ca_file"}
    ports = [int(target.rsplit(":", 1)[1]) for target in job["connect"]]
    assert ports == sorted(ports)  # listening and usual ports mixed, not told apart
    assert 9999 in ports
    text = job_copy.read_text()
    for secret in ("secret-daemon", "sshd", "192.168.10.0/24", "portal"):
        assert secret not in text.replace("/accounts/login/", "")


def test_a_round_of_silent_ports_fits_the_probe_interval() -> None:
    # 256 connects to a black hole (TEST-NET-1 is never routed): bounded by the connect
    # timeout and the pool, well inside the 30 s interval.
    targets = [f"192.0.2.1:{port}" for port in range(1, probe_ports.MAX_CONNECTS + 1)]
    started = time.monotonic()
    states = fetch.run({"connect": targets, "connect_timeout": 0.2, "deadline": 20})["connect"]
    assert time.monotonic() - started < 10
    assert set(states.values()) <= {"timeout", "closed"}


# --- a round that races the guard's own repair --------------------------------------------


class FakeVantage:
    """The vantage point as the fetcher answers it: the round, then each check again.

    `rounds` is what each connect sees, in order ("open"/"closed"); the login page answers
    200 when its port is open; `document_bytes` makes a document URL serve a PDF."""

    def __init__(self, *states: str, document_bytes: bool = False) -> None:
        self.states = list(states)
        self.document_bytes = document_bytes
        self.jobs: list[dict[str, Any]] = []

    def __call__(self, policy: Policy, job: dict[str, Any]) -> dict[str, Any]:
        self.jobs.append(job)
        state = self.states[min(len(self.jobs), len(self.states)) - 1]
        results: list[dict[str, Any]] = []
        for request in job["requests"]:
            if state != "open":
                results.append({"status": None, "error": "refused", "error_kind": "refused"})
            elif "/accounts/login/" in request["url"]:
                headers = {"cache-control": "no-store", "x-robots-tag": "noindex"}
                results.append({"status": 200, "headers": headers, "expected": True})
            elif self.document_bytes and "/documents/" in request["url"]:
                results.append({"status": 200, "headers": {}, "flags": ["pdf"]})
            else:
                results.append({"status": 302, "headers": {"location": "/accounts/login/"}})
        return {"results": results, "connect": dict.fromkeys(job["connect"], state)}


PORTAL = "http://192.0.2.10:8443"


@pytest.mark.django_db
def test_a_port_reachable_only_until_the_guard_repairs_it_is_alerted_not_locked_down(
    monkeypatch,
) -> None:
    # The race of the drill: the round ran while the ruleset was flushed; 0.3 s later the
    # guard had put its table back. Seen closed again: the alert says so, no lockdown.
    vantage = FakeVantage("open", "closed")
    monkeypatch.setattr(probe_vantage, "run_fetcher", vantage)

    outcome = probe.run_round(_internal_policy(PORTAL), ports={})

    assert {r.category for r in outcome.leaks} == {"port", "login"}
    assert not lockdown.is_locked_down()
    assert not outcome.lockdown_engaged
    recheck = vantage.jobs[1]
    assert recheck["requests"] == []
    assert recheck["connect"] == ["192.0.2.10:8443"]
    alert = Alert.objects.get(kind="guard.probe.exposure")
    assert alert.severity == "critical"  # the event is never hidden
    assert "Reachable at" in alert.summary
    assert "closed from outside" in alert.summary
    assert "no lockdown" in alert.summary
    assert alert.details["recheck"]["closed"] == ["192.0.2.10:8443"]
    event = AuditEvent.objects.get(action="guard.probe.exposure")
    assert event.extra["closed_on_recheck"] is True
    assert event.extra["lockdown_engaged"] is False


@pytest.mark.django_db
def test_attack_a_port_still_reachable_when_checked_again_locks_down(monkeypatch) -> None:
    vantage = FakeVantage("open", "open")
    monkeypatch.setattr(probe_vantage, "run_fetcher", vantage)

    outcome = probe.run_round(_internal_policy(PORTAL), ports={})

    assert len(vantage.jobs) == 2
    assert outcome.lockdown_engaged
    assert lockdown.is_locked_down()
    alert = Alert.objects.get(kind="guard.probe.exposure")
    assert "and still" in alert.summary
    assert alert.details["recheck"]["still_open"] == ["192.0.2.10:8443"]


@pytest.mark.django_db
def test_attack_a_recheck_that_cannot_run_locks_down(monkeypatch) -> None:
    vantage = FakeVantage("open")

    def round_then_broken(policy: Policy, job: dict[str, Any]) -> dict[str, Any]:
        if job["requests"]:
            return vantage(policy, job)
        raise probe_vantage.FetchFailed("ssh: connection refused")

    monkeypatch.setattr(probe_vantage, "run_fetcher", round_then_broken)

    probe.run_round(_internal_policy(PORTAL), ports={})

    assert lockdown.is_locked_down()
    assert "nothing could check again" in Alert.objects.get(kind="guard.probe.exposure").summary


@pytest.mark.django_db
@pytest.mark.usefixtures("vault_home")
def test_attack_document_bytes_lock_down_at_once_without_asking_again(monkeypatch) -> None:
    patient = make_patient()
    make_document(patient)
    vantage = FakeVantage("open", "closed", document_bytes=True)
    monkeypatch.setattr(probe_vantage, "run_fetcher", vantage)
    policy = replace(_internal_policy(PORTAL), probe_sample_size=1)

    outcome = probe.run_round(policy, ports={})

    assert any(r.category == "document" for r in outcome.leaks)
    assert len(vantage.jobs) == 1  # no second look: data left, closing now changes nothing
    assert outcome.recheck is None
    assert lockdown.is_locked_down()
