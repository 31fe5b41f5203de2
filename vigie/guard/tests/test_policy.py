"""The policy file: a typo must stop the guard with a message naming the key, never
silently weaken the perimeter."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vigie.guard.policy import PolicyError, load_policy, parse_duration, parse_policy

EXAMPLE = Path(__file__).resolve().parents[3] / "deploy" / "vigie-policy.example.toml"

PORTAL = {
    "name": "portal",
    "address": "0.0.0.0",
    "port": 8443,
    "exposure": "public",
    "sources": ["192.168.10.0/24"],
}


# An administrators' SSH, reachable from anywhere on purpose.
SSH = {"name": "ssh", "address": "0.0.0.0", "port": 22, "exposure": "outside"}


def _policy(**sections: object) -> dict[str, object]:
    data: dict[str, object] = {"listener": [dict(PORTAL)]}
    data.update(sections)
    return data


def test_the_shipped_example_is_valid() -> None:
    policy = load_policy(EXAMPLE)
    assert {lst.name for lst in policy.listeners} == {"portal", "postgresql", "mllp"}
    assert policy.public_ports == (2575, 8443)
    assert policy.max_ttl == 4 * 3600
    assert policy.probe_vantage == ("ssh", "vigie-probe@vps.example.net")


def test_defaults_are_the_issue_s_bounds() -> None:
    policy = parse_policy(_policy())
    assert policy.max_ttl == 4 * 3600
    assert policy.snapshot_interval <= 10
    assert policy.probe_interval <= 30
    assert policy.maintenance_ports == (8443,)
    assert policy.allowed_sources == ("192.168.10.0/24",)
    assert policy.lockdown_on_exposure is True
    # Reachable from the allowed sources only, unless the policy says otherwise.
    assert policy.exposure_mode == "internal"


def test_a_listener_declared_outside_is_neither_guarded_nor_an_allowed_source() -> None:
    policy = parse_policy({"listener": [PORTAL, SSH], "guard": {"exposure_mode": "public"}})
    assert policy.exposure_mode == "public"
    assert policy.outside_ports == {22: "ssh"}
    assert policy.public_ports == (8443,)
    assert policy.allowed_sources == ("192.168.10.0/24",)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (_policy(guard={"snapshot_interval": "1m"}), "guard.snapshot_interval: at most 10 s"),
        (_policy(guard={"probe_interval": "45s"}), "guard.probe_interval: at most 30 s"),
        (_policy(guard={"snapshot_intervall": "5s"}), "unknown key 'snapshot_intervall'"),
        (_policy(guard={"lockdown_on_exposure": "yes"}), "guard.lockdown_on_exposure"),
        (_policy(maintenance={"max_ttl": "soon"}), "maintenance.max_ttl"),
        (_policy(maintenance={"ports": [70000]}), "maintenance.ports"),
        (_policy(probe={"base_urls": ["ftp://x"]}), "probe.base_urls"),
        (_policy(probe={"sample_size": 1000}), "probe.sample_size"),
        ({"listener": []}, "declare at least one [[listener]]"),
        ({"listener": [{**PORTAL, "port": "8443"}]}, "listener 'portal'.port"),
        ({"listener": [{**PORTAL, "address": "portal.local"}]}, "not an IP address"),
        ({"listener": [{**PORTAL, "exposure": "internet"}]}, "'public', 'local' or 'outside'"),
        (_policy(guard={"exposure_mode": "open"}), "guard.exposure_mode: 'internal' or 'public'"),
        (_policy(guard={"exposure_mode": True}), "guard.exposure_mode"),
        (
            {"listener": [PORTAL, {**SSH, "sources": ["198.51.100.0/24"]}]},
            "an outside listener takes no sources",
        ),
        ({"listener": [PORTAL, {**SSH, "address": "127.0.0.1"}]}, "declare it local"),
        ({"listener": [PORTAL, {**SSH, "port": 8443}]}, "declared reachable from outside and"),
        (
            {"listener": [PORTAL, SSH], "maintenance": {"ports": [8443, 22]}},
            "maintenance.ports: port 22 is declared reachable from outside",
        ),
        ({"listener": [{**PORTAL, "sources": ["10.0.0.0/33"]}]}, "not an address or network"),
        ({"listener": [PORTAL, PORTAL]}, "same name"),
        ({"listener": [{k: v for k, v in PORTAL.items() if k != "exposure"}]}, "missing"),
        ({"listener": [PORTAL], "firewall": {}}, "unknown key 'firewall'"),
    ],
)
def test_a_typo_in_the_policy_is_refused_with_the_key_named(
    data: dict[str, object], message: str
) -> None:
    with pytest.raises(PolicyError, match=message.replace("[", r"\[").replace(".", r"\.")):
        parse_policy(data)


def test_database_declared_local_but_bound_publicly_is_refused() -> None:
    database = {"name": "db", "address": "0.0.0.0", "port": 5432, "exposure": "local"}
    with pytest.raises(PolicyError, match="must bind a loopback address"):
        parse_policy({"listener": [PORTAL, database]})


def test_missing_and_broken_files_say_what_is_wrong(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="no such policy file"):
        load_policy(tmp_path / "absent.toml")
    broken = tmp_path / "broken.toml"
    broken.write_text("[guard\n", encoding="utf-8")
    with pytest.raises(PolicyError, match="not valid TOML"):
        load_policy(broken)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("5s", 5),
        ("250ms", 0.25),
        ("30m", 1800),
        ("4h", 14400),
        ("1.5h", 5400),
        ("2d", 172800),
        (90, 90),
    ],
)
def test_durations(text: str | int, seconds: float) -> None:
    assert parse_duration(text) == seconds


@given(st.text(max_size=12))
def test_duration_parser_never_crashes_on_junk(text: str) -> None:
    try:
        value = parse_duration(text)
    except PolicyError:
        return
    assert value > 0


@pytest.mark.parametrize("text", ["0s", "-5s", "", "4 hours", "h", True])
def test_zero_negative_and_junk_durations_are_refused(text: str | bool) -> None:
    with pytest.raises(PolicyError):
        parse_duration(text)
