"""Starts and stops the test OpenID provider (tests/psc/provider.py) as its own process."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import requests

REPO = Path(__file__).resolve().parent.parent.parent
CLIENT_ID = "vigie-test-client"
CLIENT_SECRET = "test-only-psc-client-secret"


class ProviderProcess:
    def __init__(self, redirect_uri: str, host_name: str = "127.0.0.1") -> None:
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.psc.provider",
                "--client-id",
                CLIENT_ID,
                "--client-secret",
                CLIENT_SECRET,
                "--redirect-uri",
                redirect_uri,
                "--host-name",
                host_name,
            ],
            cwd=REPO,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline().strip()
        if not line.isdigit():
            self.stop()
            raise AssertionError(f"the test provider did not start: {line!r}")
        self.base = f"http://{host_name}:{line}"
        self.issuer = f"{self.base}/auth/realms/esante-wallet"
        self.discovery_url = f"{self.issuer}/.well-known/openid-configuration"

    def settings(self) -> dict[str, Any]:
        return {
            "VIGIE_PSC_ENABLED": True,
            "VIGIE_PSC_DISCOVERY_URL": self.discovery_url,
            "VIGIE_PSC_CLIENT_ID": CLIENT_ID,
            "VIGIE_PSC_CLIENT_SECRET": CLIENT_SECRET,
        }

    def register(self, redirect_uri: str) -> None:
        response = requests.post(
            f"{self.base}/_test/register", json={"redirect_uri": redirect_uri}, timeout=5
        )
        response.raise_for_status()

    def misbehave_next(self, mode: str) -> None:
        requests.post(f"{self.base}/_test/mode", json={"mode": mode}, timeout=5).raise_for_status()

    def logout_token(self, **claims: str) -> str:
        response = requests.post(f"{self.base}/_test/logout-token", json=claims, timeout=5)
        response.raise_for_status()
        return str(response.json()["logout_token"])

    def authorize(self, authorization_url: str, national_id: str) -> dict[str, str]:
        """What the professional's browser does at PSC: the page, then the card's identifier;
        returns the query PSC sends back to the redirect URI (code, state)."""
        page = requests.get(authorization_url, timeout=5)
        assert page.status_code == 200, page.text
        form = {k: v[0] for k, v in parse_qs(urlsplit(authorization_url).query).items()}
        answer = requests.post(
            f"{self.issuer}/auth",
            data={**form, "national_id": national_id},
            allow_redirects=False,
            timeout=5,
        )
        assert answer.status_code == 302, answer.text
        return {k: v[0] for k, v in parse_qs(urlsplit(answer.headers["Location"]).query).items()}

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()
