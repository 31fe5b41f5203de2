"""Requests without a valid API key, by the thousand: counted per source and minute and
throttled, never one audit event each (issue 17). The rules are in vigie/audit/refusals.py;
these tests go through HTTP, REST and FHIR, and through `vigie audit watch`'s pass."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from vigie.audit import watch
from vigie.audit.models import AuditEvent
from vigie.intake import apikeys
from vigie.intake.apikeys import revoke
from vigie.intake.fhir.testing import by_ins, doc_ref, post
from vigie.intake.rest.testing import metadata, new_key, pdf, send
from vigie.records.models import Document, PendingDocument
from vigie.records.testing import make_patient

pytestmark = pytest.mark.django_db

LIMIT = 60
ATTACKER = "203.0.113.9"
REFUSED = "intake.apikey.refused"
# Five seconds into a minute: Retry-After is then 55.
START = datetime(2026, 11, 2, 9, 30, 5, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    # The flood must fall within one minute whatever the machine's speed: hold the clock.
    current = Clock()
    monkeypatch.setattr(timezone, "now", current)
    return current


@pytest.fixture(autouse=True)
def _env(settings: Any, tmp_path: Path, vault_home: Path) -> None:
    settings.VIGIE_REFUSALS_PER_MINUTE = LIMIT
    # The watcher's pass signs a checkpoint and beats: into this test's own files.
    settings.VIGIE_AUDIT_CHECKPOINT_FILE = tmp_path / "audit" / "checkpoints.jsonl"
    settings.VIGIE_AUDIT_WATCH_HEARTBEAT_FILE = tmp_path / "audit" / "watch.heartbeat"


@pytest.fixture
def hashes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every secret hashed while checking a key."""
    seen: list[str] = []
    real = apikeys._hash

    def counting(secret: str) -> str:
        seen.append(secret)
        return real(secret)

    monkeypatch.setattr(apikeys, "_hash", counting)
    return seen


def _watch_pass() -> None:
    watch.run(threading.Event(), interval=0, once=True)


def _refusals(action: str = REFUSED) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(action=action).order_by("seq"))


def _counted(events: list[AuditEvent]) -> int:
    return sum(int(event.extra.get("count", 1)) for event in events)


def _rest(client: Client) -> Any:
    patient = make_patient()
    return lambda: send(
        client,
        "vk_0badc0ffee00_guessed",
        content=pdf(),
        meta=metadata(ins=patient.ins),
        REMOTE_ADDR=ATTACKER,
    )


def _fhir(client: Client) -> Any:
    patient = make_patient()
    client.defaults["HTTP_AUTHORIZATION"] = "Bearer vk_0badc0ffee00_guessed"
    client.defaults["REMOTE_ADDR"] = ATTACKER
    resource = doc_ref(by_ins(patient))
    return lambda: post(client, resource)


@pytest.mark.parametrize("channel", [_rest, _fhir], ids=["rest", "fhir"])
def test_attack_anonymous_flood_does_not_grow_the_audit_chain(
    clock: Clock, hashes: list[str], channel: Any
) -> None:
    attempt = channel(Client())
    chain_before = AuditEvent.objects.count()

    answers = [attempt() for _ in range(500)]

    assert [a.status_code for a in answers[:LIMIT]] == [401] * LIMIT
    assert {a.status_code for a in answers[LIMIT:]} == {429}
    assert {a["Retry-After"] for a in answers[LIMIT:]} == {"55"}
    # Throttled requests never reach the key check: only the first LIMIT were hashed.
    assert len(hashes) == 2 * LIMIT  # (the presented secret and the constant-time dummy)
    # While the flood lasts, one event: its first refusal, at once (an alarm is not delayed).
    assert AuditEvent.objects.count() - chain_before == 1
    first = _refusals()[0]
    assert (first.reason, first.source_ip, first.extra["count"]) == ("unknown", ATTACKER, 1)

    # The minute is over: the watcher's next pass writes the rest of it, counted.
    clock.now += timedelta(minutes=1)
    _watch_pass()
    events = _refusals()
    assert len(events) <= 3
    assert _counted(events) == 500
    assert {e.source_ip for e in events} == {ATTACKER}
    assert sorted(e.reason for e in events) == ["throttled", "unknown", "unknown"]
    # A second pass finds nothing left to write: nothing is counted twice.
    _watch_pass()
    assert _counted(_refusals()) == 500
    assert not Document.objects.exists()
    assert not PendingDocument.objects.exists()


def test_the_next_minutes_first_refusal_writes_the_last_minutes_count(clock: Clock) -> None:
    attempt = _rest(Client())
    for _ in range(10):
        attempt()
    assert _counted(_refusals()) == 1
    clock.now += timedelta(seconds=60)
    attempt()  # no watcher: the source's own next refusal flushes its past minute
    per_minute: dict[str, int] = {}
    for event in _refusals():
        per_minute[event.extra["minute"]] = (
            per_minute.get(event.extra["minute"], 0) + event.extra["count"]
        )
    assert per_minute == {"2026-11-02T09:30:00+00:00": 10, "2026-11-02T09:31:00+00:00": 1}


def test_the_throttle_ends_with_the_minute(clock: Clock) -> None:
    attempt = _rest(Client())
    for _ in range(LIMIT):
        attempt()
    assert attempt().status_code == 429
    clock.now += timedelta(seconds=55)
    assert attempt().status_code == 401


def test_a_throttled_address_does_not_throttle_another(clock: Clock) -> None:
    attempt = _rest(Client())
    for _ in range(LIMIT + 1):
        attempt()
    _key, text = new_key()
    patient = make_patient()
    lab = send(
        Client(), text, content=pdf(), meta=metadata(ins=patient.ins), REMOTE_ADDR="10.1.2.3"
    )
    assert lab.status_code == 202


def test_attack_a_flood_from_a_labs_own_address_does_not_lock_the_lab_out(
    clock: Clock, hashes: list[str]
) -> None:
    """Someone behind the lab's NAT (or spoofing nothing at all: sharing its address) sends
    guessed keys until the address is throttled. The lab's valid key still gets through:
    the throttle is for callers without a valid key, and its holder is accountable."""
    attempt = _rest(Client())
    for _ in range(LIMIT + 1):
        attempt()
    assert attempt().status_code == 429
    _key, text = new_key()
    patient = make_patient()
    lab = send(Client(), text, content=pdf(), meta=metadata(ins=patient.ins), REMOTE_ADDR=ATTACKER)
    assert lab.status_code == 202, lab.content
    # And the flood stays throttled, its guesses still never hashed.
    hashed = len(hashes)
    assert attempt().status_code == 429
    assert len(hashes) == hashed


def test_a_known_key_with_a_wrong_secret_is_throttled_like_a_guess(clock: Clock) -> None:
    key, text = new_key()
    wrong = f"{apikeys.KEY_PREFIX}{key.prefix}_not-the-secret"
    patient = make_patient()
    client = Client()

    def attempt(presented: str) -> Any:
        return send(
            client, presented, content=pdf(), meta=metadata(ins=patient.ins), REMOTE_ADDR=ATTACKER
        )

    statuses = [attempt(wrong).status_code for _ in range(LIMIT + 2)]
    assert statuses == [401] * LIMIT + [429] * 2
    assert not Document.objects.exists()
    assert attempt(text).status_code == 202


def test_a_valid_key_does_not_read_the_refusal_counters(clock: Clock) -> None:
    _key, text = new_key()
    patient = make_patient()
    with CaptureQueriesContext(connection) as queries:
        response = send(Client(), text, content=pdf(), meta=metadata(ins=patient.ins))
    assert response.status_code == 202
    assert not [q for q in queries.captured_queries if "refusalcount" in q["sql"]]


def test_a_known_key_refused_is_audited_every_time_but_still_throttled(clock: Clock) -> None:
    key, text = new_key()
    revoke(key, by="it.admin")
    patient = make_patient()
    client = Client()

    def attempt() -> Any:
        return send(
            client, text, content=pdf(), meta=metadata(ins=patient.ins), REMOTE_ADDR=ATTACKER
        )

    statuses = [attempt().status_code for _ in range(LIMIT + 5)]
    assert statuses == [401] * LIMIT + [429] * 5
    revoked = [e for e in _refusals() if e.reason == "revoked"]
    # Each names the key: one event per attempt, not a count.
    assert len(revoked) == LIMIT
    assert {e.extra["key"] for e in revoked} == {key.name}
    clock.now += timedelta(minutes=1)
    _watch_pass()
    assert _counted(_refusals()) == LIMIT + 5


def test_an_ipv6_flood_is_counted_by_its_64(clock: Clock) -> None:
    client = Client()
    statuses = [
        send(client, None, REMOTE_ADDR=f"2001:db8:1:2::{n:x}").status_code
        for n in range(1, LIMIT + 11)
    ]
    assert statuses == [401] * LIMIT + [429] * 10
    assert len(_refusals()) == 1
    clock.now += timedelta(minutes=1)
    _watch_pass()
    events = _refusals()
    assert _counted(events) == LIMIT + 10
    assert events[-1].source_ip == "2001:db8:1:2::/64"


def test_a_fhir_read_with_a_key_is_counted_and_throttled(clock: Clock) -> None:
    client = Client(HTTP_AUTHORIZATION="Bearer vk_anything_atall", REMOTE_ADDR=ATTACKER)
    statuses = [client.get("/fhir/Patient?name=DURAND").status_code for _ in range(LIMIT + 3)]
    assert statuses == [403] * LIMIT + [429] * 3
    assert len(_refusals("intake.fhir.read_refused")) == 1
    clock.now += timedelta(minutes=1)
    _watch_pass()
    assert _counted(_refusals("intake.fhir.read_refused")) == LIMIT + 3


def test_the_denial_rule_counts_a_flood_once_summarised(clock: Clock) -> None:
    from vigie.alerts.models import Alert

    attempt = _rest(Client())
    for _ in range(30):
        attempt()
    clock.now += timedelta(minutes=1)
    _watch_pass()
    alert = Alert.objects.get(kind="access.denials")
    assert alert.details["denied"] == 30
    assert alert.details["source_ip"] == ATTACKER
