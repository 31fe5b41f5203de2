"""`vigie maintenance`: through call_command, with real nft in a throwaway namespace."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from vigie.accounts.models import Role
from vigie.accounts.testing import PASSWORD, fresh_code, make_user, totp_device
from vigie.audit.models import AuditEvent
from vigie.guard import nft
from vigie.guard.models import CloseReason, MaintenanceWindow

pytestmark = pytest.mark.django_db

POLICY = """\
[maintenance]
max_ttl = "1h"
ports = [8443]

[[listener]]
name = "portal"
address = "0.0.0.0"
port = 8443
exposure = "public"
"""


@pytest.fixture(autouse=True)
def policy_file(tmp_path: Path, settings) -> Path:
    path = tmp_path / "vigie-policy.toml"
    path.write_text(POLICY, encoding="utf-8")
    settings.VIGIE_POLICY_FILE = path
    return path


def run(*args: str, stdin: str | None = None) -> str:
    out = io.StringIO()
    options = {"stdout": out}
    if stdin is not None:
        options["stdin"] = io.StringIO(stdin)
    call_command("maintenance", *args, **options)
    return out.getvalue()


def open_one(source: str = "10.0.0.9", ttl: str = "5m") -> MaintenanceWindow:
    run("open", "--who", "Acme", "--reason", "upgrade", "--source", source, "--ttl", ttl)
    return MaintenanceWindow.objects.get(source=source, closed_at__isnull=True)


def expires(source: str = "10.0.0.9") -> float:
    [element] = [e for e in nft.list_windows() if e.source == source]
    assert element.expires_in is not None
    return element.expires_in


@pytest.mark.netns
def test_it_opens_a_window_and_says_until_when(netns):
    out = run("open", "--who", "Acme", "--reason", "upgrade", "--source", "10.0.0.9", "--ttl", "5m")
    window = MaintenanceWindow.objects.get()
    assert f"window {window.pk} open" in out
    assert "10.0.0.9" in out
    assert "5m" in out
    assert 295 <= expires() <= 300


def test_the_ttl_is_mandatory():
    with pytest.raises(CommandError, match="--ttl"):
        run("open", "--who", "Acme", "--reason", "upgrade", "--source", "10.0.0.9")
    assert not MaintenanceWindow.objects.exists()


@pytest.mark.netns
def test_a_ttl_over_the_cap_is_refused_in_one_line_naming_the_cap(netns):
    with pytest.raises(CommandError) as caught:
        run("open", "--who", "A", "--reason", "b", "--source", "10.0.0.9", "--ttl", "2h")
    assert "max_ttl is 1h" in str(caught.value)
    assert "\n" not in str(caught.value)
    assert not MaintenanceWindow.objects.exists()


def test_a_malformed_ttl_is_refused():
    with pytest.raises(CommandError, match="--ttl"):
        run("open", "--who", "A", "--reason", "b", "--source", "10.0.0.9", "--ttl", "soon")


def test_a_broken_policy_file_is_refused_naming_the_file(policy_file):
    policy_file.write_text("[maintenance]\nmax_tll = '1h'\n", encoding="utf-8")
    with pytest.raises(CommandError, match=f"{policy_file}.*max_tll"):
        run("open", "--who", "A", "--reason", "b", "--source", "10.0.0.9", "--ttl", "5m")


def test_without_nftables_the_command_refuses_and_names_the_debian_package(monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda *args, **kwargs: None)
    with pytest.raises(CommandError, match="Debian package `nftables`"):
        run("open", "--who", "A", "--reason", "b", "--source", "10.0.0.9", "--ttl", "5m")
    assert not MaintenanceWindow.objects.exists()


@pytest.mark.netns
def test_list_shows_open_windows_and_all_shows_closed_ones(netns):
    kept = open_one("10.0.0.9")
    gone = open_one("10.0.0.8")
    run("close", str(gone.pk))

    out = run("list")
    assert "source" in out.splitlines()[0]
    assert "verified" in out.splitlines()[0]
    assert "10.0.0.9" in out
    assert "left)" in out
    assert "10.0.0.8" not in out

    everything = run("list", "--all")
    assert "10.0.0.8" in everything
    assert "Closed by hand" in everything
    assert str(kept.pk) in everything


@pytest.mark.netns
def test_close_ends_the_window_in_the_kernel(netns):
    window = open_one()
    out = run("close", str(window.pk))
    assert f"window {window.pk} closed" in out
    window.refresh_from_db()
    assert window.close_reason == CloseReason.CLOSED
    assert not nft.list_windows()


def test_closing_an_unknown_window_is_a_clear_error():
    with pytest.raises(CommandError, match="no maintenance window 999"):
        run("close", "999")


@pytest.mark.netns
def test_extend_with_a_stolen_password_but_wrong_code_is_refused_and_audited(netns):
    admin = make_user("it.admin", role=Role.ADMIN)
    window = open_one()
    ends_at = window.ends_at

    with pytest.raises(CommandError, match="re-authentication refused"):
        run(
            "extend",
            str(window.pk),
            "--ttl",
            "30m",
            "--admin",
            "it.admin",
            stdin=f"{PASSWORD}\n000000\n",
        )

    window.refresh_from_db()
    assert window.ends_at == ends_at
    assert window.extensions == 0
    assert expires() <= 300
    [event] = AuditEvent.objects.filter(action="maintenance.window.extended")
    assert event.outcome == "denied"
    assert event.reason == "wrong_code"
    assert event.actor_id == admin.pk


@pytest.mark.netns
def test_extend_with_a_guessed_password_is_refused_and_audited(netns):
    admin = make_user("it.admin", role=Role.ADMIN)
    window = open_one()
    code = fresh_code(totp_device(admin))
    with pytest.raises(CommandError, match="re-authentication refused"):
        run(
            "extend",
            str(window.pk),
            "--ttl",
            "30m",
            "--admin",
            "it.admin",
            stdin=f"hunter2\n{code}\n",
        )
    [event] = AuditEvent.objects.filter(action="maintenance.window.extended")
    assert (event.outcome, event.reason) == ("denied", "wrong_password")


@pytest.mark.netns
def test_extend_by_a_doctor_with_valid_credentials_is_refused(netns):
    doctor = make_user("dr.house", role=Role.DOCTOR)
    window = open_one()
    code = fresh_code(totp_device(doctor))
    with pytest.raises(CommandError, match="re-authentication refused"):
        run(
            "extend",
            str(window.pk),
            "--ttl",
            "30m",
            "--admin",
            "dr.house",
            stdin=f"{PASSWORD}\n{code}\n",
        )
    [event] = AuditEvent.objects.filter(action="maintenance.window.extended")
    assert (event.outcome, event.reason) == ("denied", "not_an_active_admin")
    assert MaintenanceWindow.objects.get(pk=window.pk).extensions == 0


@pytest.mark.netns
def test_extend_by_an_unknown_account_is_refused_and_audited(netns):
    window = open_one()
    with pytest.raises(CommandError, match="re-authentication refused"):
        run("extend", str(window.pk), "--ttl", "30m", "--admin", "nobody", stdin="x\n123456\n")
    [event] = AuditEvent.objects.filter(action="maintenance.window.extended")
    assert event.outcome == "denied"
    assert event.extra["admin"] == "nobody"


@pytest.mark.netns
def test_extend_with_password_and_code_works_and_is_capped(netns):
    admin = make_user("it.admin", role=Role.ADMIN)
    window = open_one()
    device = totp_device(admin)

    with pytest.raises(CommandError, match="max_ttl is 1h"):
        run(
            "extend",
            str(window.pk),
            "--ttl",
            "2h",
            "--admin",
            "it.admin",
            stdin=f"{PASSWORD}\n{fresh_code(device)}\n",
        )
    assert expires() <= 300

    out = run(
        "extend", str(window.pk), "--ttl", "30m", "--admin", "it.admin",
        stdin=f"{PASSWORD}\n{fresh_code(device)}\n",
    )  # fmt: skip

    assert f"window {window.pk} extended by it.admin" in out
    assert 1790 <= expires() <= 1800
    window.refresh_from_db()
    assert window.extensions == 1
    assert window.extended_by == "it.admin"
    [event] = AuditEvent.objects.filter(action="maintenance.window.extended")
    assert event.outcome == "success"
    assert event.actor_id == admin.pk
