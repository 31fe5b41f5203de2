"""DATABASE_URL, read into Django's DATABASES entry, with libpq's multi-host form.

dj-database-url reads the usual `postgres://user:password@host:port/name?option=value`, but
not the list of servers libpq accepts for failover,
`postgres://user@h1:5432,h2:5433/name?target_session_attrs=read-write`: its port is no
number, so the whole URL is refused. Here such a list is taken apart first and handed to
Django as libpq wants it: HOST "h1,h2" and PORT "5432,5433" (Django's backend passes both to
psycopg unchanged, psycopg tries each server in turn, and `target_session_attrs=read-write`
makes it skip a standby, which only accepts read-only sessions). Everything else in the URL
(user, password, database, options) is still read by dj-database-url.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import unquote

import dj_database_url

from vigie.lib.env import ConfigError

# scheme://[userinfo@]servers[/path][?query][#fragment]; userinfo may hold anything but "/".
_URL = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://(?P<netloc>[^/?#]*)(?P<rest>.*)$")
# One server: a bracketed IPv6 address, or a name / IPv4 address / %-encoded socket folder,
# then an optional :port.
_SERVER = re.compile(r"^(?:\[(?P<ipv6>[0-9A-Fa-f:.]+)\]|(?P<host>[^:\[\]]+))(?::(?P<port>[^:]*))?$")
_PLACEHOLDER = "multi-host.invalid"


def parse(url: str, **options: Any) -> dict[str, Any]:
    """Django's DATABASES entry for `url` (`options` go to dj-database-url's parse).

    Raises ConfigError, naming DATABASE_URL and what is wrong, for a malformed URL.
    """
    match = _URL.match(url)
    netloc = match["netloc"] if match else ""
    userinfo, _, servers = netloc.rpartition("@")
    if match is None or "," not in servers:
        return _dj_parse(url, **options)
    hosts, ports = _servers(servers)
    single = f"{match['scheme']}://{userinfo}{'@' if userinfo else ''}{_PLACEHOLDER}"
    parsed = _dj_parse(single + match["rest"], **options)
    parsed["HOST"] = ",".join(hosts)
    parsed["PORT"] = ",".join(ports) if any(ports) else ""
    return parsed


def _dj_parse(url: str, **options: Any) -> dict[str, Any]:
    try:
        return dict(dj_database_url.parse(url, **options))
    except Exception as exc:  # dj-database-url raises several types for a bad URL
        raise ConfigError(f"DATABASE_URL is not a valid database URL ({exc})") from None


def _servers(servers: str) -> tuple[list[str], list[str]]:
    """Hosts and ports of `h1[:p1],h2[:p2],...`; a server without a port gets 5432 when
    another names one (libpq wants one port, or one per host)."""
    hosts: list[str] = []
    ports: list[str] = []
    for n, item in enumerate(servers.split(","), start=1):
        server = _SERVER.match(item)
        if server is None:
            raise ConfigError(
                f"DATABASE_URL: server {n} of the list {servers!r} is "
                + ("empty" if not item else f"not host[:port] ({item!r})")
            )
        port = server["port"]
        if port is not None and not (port.isdigit() and 0 < int(port) < 65536):
            raise ConfigError(
                f"DATABASE_URL: server {n} of the list {servers!r} has port {port!r}, "
                "not a number from 1 to 65535"
            )
        hosts.append(server["ipv6"] or unquote(server["host"]))
        ports.append(str(int(port)) if port else "")
    if any(ports):
        ports = [port or "5432" for port in ports]
    return hosts, ports
