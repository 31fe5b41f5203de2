"""A `vigie serve` of the shared live installation with PSC configured, and its provider.

Shared by the browser sign-in test and the leak crawler: both need the real server talking to
the test provider process, started and stopped the same way.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from tests.browser.live import Installation, Server
from tests.psc.process import CLIENT_ID, CLIENT_SECRET, ProviderProcess


@dataclass
class PscServer:
    provider: ProviderProcess
    server: Server


@contextmanager
def serve_with_psc(installation: Installation) -> Iterator[PscServer]:
    # The provider on "localhost" and Vigie on 127.0.0.1: two sites, as PSC and a clinic are.
    provider = ProviderProcess("http://127.0.0.1/unregistered", host_name="localhost")
    secret = installation.root / "psc_client_secret"
    secret.write_text(CLIENT_SECRET, encoding="utf-8")
    os.chmod(secret, 0o600)  # noqa: PTH101 -- as `vigie check` wants it
    try:
        server = installation.start_server(
            VIGIE_PSC_DISCOVERY_URL=provider.discovery_url,
            VIGIE_PSC_CLIENT_ID=CLIENT_ID,
            VIGIE_PSC_CLIENT_SECRET_FILE=str(secret),
        )
        try:
            provider.register(f"{server.base_url}/accounts/psc/callback/")
            yield PscServer(provider, server)
        finally:
            server.stop()
            installation.servers.remove(server)
    finally:
        provider.stop()
