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


def haproxy_binary() -> str:
    """Debian's HAProxy, or "" when it is not installed."""
    return shutil.which("haproxy") or (
        "/usr/sbin/haproxy" if Path("/usr/sbin/haproxy").exists() else ""
    )


def haproxy_site(folder: Path, config: str, admin_socket: Path) -> Path:
    """deploy/haproxy/vigie.cfg's text in `folder`, its certificate (chain and key in one file,
    self-signed for the portal) and its runtime API socket (`admin_socket`) in the folder."""
    cert, key = self_signed(folder, PORTAL, names=("haproxy-cert.pem", "haproxy-key.pem"))
    bundle = folder / "portal.pem"
    bundle.write_bytes(cert.read_bytes() + key.read_bytes())
    for placeholder, real in (
        ("/etc/haproxy/certs/portal.pem", bundle),
        ("/run/haproxy/admin.sock", admin_socket),
    ):
        assert placeholder in config
        config = config.replace(placeholder, str(real))
    path = folder / "haproxy.cfg"
    path.write_text(config, encoding="utf-8")
    return path
