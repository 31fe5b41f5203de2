"""`vigie check` for Pro Santé Connect: the client secret file, and the provider reachable.

The discovery document is fetched (with a short timeout) and must name its issuer as the
URL it was read from, and every endpoint the sign-in uses; its key set must hold a key. A
clinic learns here, not from a doctor at the login page, that the secret is readable by
others or that the server cannot reach PSC.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import requests
from django.conf import settings

from vigie.accounts.psc.client import DISCOVERY_SUFFIX
from vigie.ops.check_base import FAILURE, OK, WARNING, Context, Finding

_TIMEOUT_SECONDS = 5
_ENDPOINTS = ("authorization_endpoint", "token_endpoint", "userinfo_endpoint", "jwks_uri")


def check_psc_secret(ctx: Context) -> Finding:
    from vigie.ops.checks import _private_file_problem

    if not settings.VIGIE_PSC_ENABLED:
        return Finding("psc", OK, "Pro Santé Connect is not configured (not offered)")
    path = settings.VIGIE_PSC_CLIENT_SECRET_FILE
    if path is None:
        return Finding(
            "psc.client_secret",
            WARNING,
            "the PSC client secret is given in the environment (VIGIE_PSC_CLIENT_SECRET), "
            "where child processes and crash reports can see it",
            "put it in a file readable only by Vigie and set VIGIE_PSC_CLIENT_SECRET_FILE",
        )
    problem = _private_file_problem(Path(path), "the PSC client secret file")
    if problem is not None:
        return Finding("psc.client_secret", FAILURE, problem[0], problem[1])
    return Finding("psc.client_secret", OK, f"PSC client secret in {path} (private)")


def _get_json(url: str) -> Any:
    response = requests.get(url, timeout=_TIMEOUT_SECONDS)
    response.raise_for_status()
    return response.json()


def check_psc_discovery(ctx: Context) -> list[Finding]:
    if not settings.VIGIE_PSC_ENABLED:
        return []
    url = str(settings.VIGIE_PSC_DISCOVERY_URL)
    fix = f"check VIGIE_PSC_DISCOVERY_URL and that this server can reach {url} (proxy, firewall)"
    try:
        metadata = _get_json(url)
        if not isinstance(metadata, dict):
            raise ValueError("not a JSON object")
        missing = [name for name in _ENDPOINTS if not metadata.get(name)]
        if missing:
            raise ValueError(f"no {', '.join(missing)}")
        issuer = str(metadata.get("issuer") or "")
        if issuer.rstrip("/") + DISCOVERY_SUFFIX != url:
            raise ValueError(f"its issuer {issuer!r} is not the URL's")
        keys = _get_json(str(metadata["jwks_uri"]))
        if not isinstance(keys, dict) or not keys.get("keys"):
            raise ValueError("its key set (jwks_uri) holds no key")
    except (requests.RequestException, ValueError) as exc:
        first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        return [
            Finding("psc.discovery", FAILURE, f"PSC discovery document {url}: {first_line}", fix)
        ]
    return [
        Finding(
            "psc.discovery",
            OK,
            f"PSC reachable: issuer {issuer}, {len(keys['keys'])} signing key(s)",
        )
    ]
