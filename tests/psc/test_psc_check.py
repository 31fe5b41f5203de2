"""`vigie check` reports the PSC settings: the discovery document (here the test provider on
loopback, never the real PSC) and the client secret file's mode."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

from tests.psc.process import ProviderProcess
from vigie.ops.check_base import Context
from vigie.ops.checks import run_all
from vigie.ops.checks_psc import check_psc_discovery, check_psc_secret


def _findings(check: Any) -> dict[str, Any]:
    return {f.id: f for f in run_all(Context(), [("x", check)])}


def _secret_file(tmp_path: Path, mode: int) -> Path:
    path = tmp_path / "psc_client_secret"
    path.write_text("secret\n", encoding="utf-8")
    path.chmod(mode)
    return path


def test_it_reports_a_reachable_provider(provider: ProviderProcess) -> None:
    finding = _findings(check_psc_discovery)["psc.discovery"]
    assert finding.status == "ok"
    assert provider.issuer in finding.message
    assert "1 signing key" in finding.message


def test_it_fails_when_the_discovery_document_cannot_be_read(settings: Any) -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    settings.VIGIE_PSC_DISCOVERY_URL = f"http://127.0.0.1:{port}/.well-known/openid-configuration"
    finding = _findings(check_psc_discovery)["psc.discovery"]
    assert finding.status == "failure"
    assert "VIGIE_PSC_DISCOVERY_URL" in finding.fix


def test_it_fails_when_the_issuer_is_not_the_urls(provider: ProviderProcess, settings: Any) -> None:
    # The same document under another URL (say, a proxy's): the issuer would not match the
    # ID tokens' expected issuer.
    settings.VIGIE_PSC_DISCOVERY_URL = provider.discovery_url.replace("127.0.0.1", "localhost")
    finding = _findings(check_psc_discovery)["psc.discovery"]
    assert finding.status == "failure"
    assert "issuer" in finding.message


def test_it_fails_on_a_secret_file_others_can_read(settings: Any, tmp_path: Path) -> None:
    settings.VIGIE_PSC_CLIENT_SECRET_FILE = _secret_file(tmp_path, 0o644)
    finding = _findings(check_psc_secret)["psc.client_secret"]
    assert finding.status == "failure"
    assert "0644" in finding.message
    assert finding.fix.startswith("chmod 600")


def test_it_accepts_a_private_secret_file(settings: Any, tmp_path: Path) -> None:
    settings.VIGIE_PSC_CLIENT_SECRET_FILE = _secret_file(tmp_path, 0o600)
    assert _findings(check_psc_secret)["psc.client_secret"].status == "ok"


def test_it_warns_about_a_secret_in_the_environment(settings: Any) -> None:
    settings.VIGIE_PSC_CLIENT_SECRET_FILE = None
    assert _findings(check_psc_secret)["psc.client_secret"].status == "warning"


def test_nothing_to_report_when_psc_is_not_configured(settings: Any) -> None:
    settings.VIGIE_PSC_ENABLED = False
    assert _findings(check_psc_secret)["psc"].status == "ok"
    assert _findings(check_psc_discovery) == {}
