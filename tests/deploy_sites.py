"""The shipped proxy configurations (deploy/), made runnable in a test's folder.

Only what must point at the test's own files changes: the certificate placeholders (a
self-signed certificate for the portal's name), and nginx's pid, log and temporary folders,
which the shipped site leaves to the distribution's nginx.conf.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from vigie.lib.testing import self_signed

PORTAL = "portal.clinic.example.org"


def nginx_binary() -> str:
    """Debian's nginx, or "" when it is not installed."""
    return shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else "")


def nginx_site(folder: Path, site: str) -> Path:
    """An nginx.conf in `folder` that includes `site` (deploy/nginx/vigie.conf's text) with
    its certificate placeholders pointing at a self-signed certificate for the portal."""
    cert, key = self_signed(folder, PORTAL, names=("fullchain.pem", "privkey.pem"))
    for placeholder, real in (
        ("/etc/ssl/vigie/fullchain.pem", cert),
        ("/etc/ssl/vigie/privkey.pem", key),
    ):
        assert placeholder in site
        site = site.replace(placeholder, str(real))
    (folder / "vigie.conf").write_text(site, encoding="utf-8")
    temp_paths = "\n".join(
        f"    {kind}_temp_path {folder / kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    conf = folder / "nginx.conf"
    conf.write_text(
        f"pid {folder / 'nginx.pid'};\n"
        f"error_log {folder / 'error.log'};\n"
        "events {}\n"
        "http {\n"
        "    access_log off;\n"
        f"{temp_paths}\n"
        f"    include {folder / 'vigie.conf'};\n"
        "}\n",
        encoding="utf-8",
    )
    return conf
