"""Parts of a small Vigie group on one machine, for the failover drill: real processes only.

* `Network`: a bridge in the root namespace (the "LAN" and its one service address, where
  PostgreSQL and the S3 server listen) and one network namespace per node, each joined to
  the bridge by a veth pair. Nodes are separate hosts for the network; the test process
  reaches them, and they reach the services, through the bridge.
* `PgCluster`: a PostgreSQL cluster of Debian's binaries in a temporary folder (initdb
  refuses root: it runs as `postgres`), a primary or a streaming standby made with
  `pg_basebackup -R`.
* `HAProxy`: Debian's haproxy in the foreground with its runtime API on a Unix socket, to see
  when it marks a server DOWN.

Everything is created with names of its own (random suffix) and removed by `close()` /
`stop()`, which never raise, so a failing test still leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import csv
import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


def _newest_postgresql() -> Path:
    """Debian's server binaries, the newest installed major version (15 on this machine)."""
    found = [b for b in Path("/usr/lib/postgresql").glob("*/bin") if (b / "initdb").exists()]
    found.sort(key=lambda b: int(b.parent.name) if b.parent.name.isdigit() else 0)
    return found[-1] if found else Path("/usr/lib/postgresql/15/bin")


PG_BIN = _newest_postgresql()
SBIN = "/usr/sbin:/sbin"


def which(tool: str) -> str | None:
    return shutil.which(tool) or shutil.which(tool, path=SBIN)


def missing_tools() -> list[str]:
    """What this machine lacks for the drill (root counts as a tool)."""
    missing = [t for t in ("haproxy", "ip", "runuser") if which(t) is None]
    missing += [
        str(PG_BIN / t) for t in ("initdb", "pg_ctl", "pg_basebackup") if not (PG_BIN / t).exists()
    ]
    if os.geteuid() != 0:
        missing.append("root (network namespaces)")
    return missing


def wait_until(
    what: str, predicate: Callable[[], bool], timeout: float, step: float = 0.05
) -> float:
    """Seconds until `predicate()` holds; AssertionError after `timeout`."""
    start = time.monotonic()
    while True:
        if predicate():
            return time.monotonic() - start
        if time.monotonic() - start > timeout:
            raise AssertionError(f"{what}: not within {timeout:g} s")
        time.sleep(step)


def _run(*argv: str, timeout: float = 120) -> str:
    result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    if result.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} exited {result.returncode}\n{result.stderr}")
    return result.stdout


def free_port(host: str) -> int:
    with socket.socket() as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


# --- the network --------------------------------------------------------------------------


@dataclass
class Network:
    """A bridge with address `<subnet>.1` and namespaces whose hosts are `.2`, `.3`, ..."""

    tag: str = field(default_factory=lambda: secrets.token_hex(3))
    subnet: str = field(
        default_factory=lambda: f"10.{secrets.randbelow(200) + 20}.{secrets.randbelow(250)}"
    )
    namespaces: dict[str, str] = field(default_factory=dict)  # name -> address

    @property
    def bridge(self) -> str:
        return f"vfobr{self.tag}"

    @property
    def service_address(self) -> str:
        """The root namespace's address on the bridge: where the shared services listen."""
        return f"{self.subnet}.1"

    def up(self) -> None:
        _run("ip", "link", "add", self.bridge, "type", "bridge")
        _run("ip", "addr", "add", f"{self.service_address}/24", "dev", self.bridge)
        _run("ip", "link", "set", self.bridge, "up")

    def add_host(self) -> tuple[str, str]:
        """A new namespace on the bridge: (its name, its address)."""
        n = len(self.namespaces)
        name, address = f"vfo{self.tag}-{n}", f"{self.subnet}.{n + 2}"
        outer, inner = f"vfo{self.tag}o{n}", f"vfo{self.tag}i{n}"
        _run("ip", "netns", "add", name)
        self.namespaces[name] = address
        _run("ip", "link", "add", outer, "type", "veth", "peer", "name", inner)
        _run("ip", "link", "set", outer, "master", self.bridge)
        _run("ip", "link", "set", outer, "up")
        _run("ip", "link", "set", inner, "netns", name)
        _run("ip", "-n", name, "addr", "add", f"{address}/24", "dev", inner)
        _run("ip", "-n", name, "link", "set", inner, "up")
        _run("ip", "-n", name, "link", "set", "lo", "up")
        return name, address

    def close(self) -> None:
        # Deleting a namespace deletes its end of each veth, and with it the peer.
        for name in self.namespaces:
            subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)
        subprocess.run(["ip", "link", "del", self.bridge], capture_output=True, check=False)


# --- PostgreSQL ---------------------------------------------------------------------------


@dataclass
class PgCluster:
    """One PostgreSQL cluster in `data`, owned and run by the `postgres` user."""

    data: Path
    port: int
    listen: list[str]

    def _as_postgres(self, tool: str, *args: str, timeout: float = 120) -> str:
        return _run("runuser", "-u", "postgres", "--", str(PG_BIN / tool), *args, timeout=timeout)

    def _configure(self, **settings: str) -> None:
        # Appended: in postgresql.conf the last setting of a name wins, so a standby's own
        # values override the ones pg_basebackup copied from the primary.
        lines = "".join(f"{name} = '{value}'\n" for name, value in settings.items())
        with (self.data / "postgresql.conf").open("a", encoding="utf-8") as conf:
            conf.write(lines)

    def _own_settings(self, synchronous_standby_names: str) -> None:
        self._configure(
            port=str(self.port),
            listen_addresses=",".join(self.listen),
            unix_socket_directories=str(self.data),
            synchronous_standby_names=synchronous_standby_names,
        )

    def init_primary(self, trusted_network: str, standby_name: str) -> None:
        self._as_postgres(
            "initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust",
            "--encoding=UTF8", "--no-locale", "--no-sync",
        )  # fmt: skip
        with (self.data / "pg_hba.conf").open("a", encoding="utf-8") as hba:
            # Only the drill's own bridge (and loopback, from initdb) may connect.
            hba.write(f"host all all {trusted_network} trust\n")
        self._configure(
            wal_level="replica",
            max_wal_senders="5",
            hot_standby="on",
            synchronous_commit="on",
            shared_buffers="32MB",
            # Fail fast on a standby that is gone (the default waits a minute).
            wal_sender_timeout="5s",
        )
        # A commit returns once the standby has it on disk: what makes the promotion lose
        # nothing that was acknowledged.
        self._own_settings(synchronous_standby_names=standby_name)

    def init_standby(self, primary: PgCluster, name: str) -> None:
        conninfo = f"host=127.0.0.1 port={primary.port} user=postgres application_name={name}"
        self._as_postgres(
            "pg_basebackup", "-d", conninfo, "-D", str(self.data), "-R", "-X", "stream",
            "-c", "fast", "--no-sync",
        )  # fmt: skip
        # Once promoted it has no standby of its own: waiting for one would hang every commit.
        self._own_settings(synchronous_standby_names="")

    def start(self) -> None:
        log = self.data.parent / f"{self.data.name}.log"
        self._as_postgres("pg_ctl", "-D", str(self.data), "-l", str(log), "-w", "-t", "60", "start")

    def stop(self, mode: str = "fast") -> None:
        """`immediate`: as a server that died (no checkpoint, clients cut)."""
        self._as_postgres("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def promote(self) -> None:
        self._as_postgres("pg_ctl", "-D", str(self.data), "-w", "-t", "60", "promote")

    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists()

    def kill(self) -> None:
        """Stop whatever runs, never raising (cleanup)."""
        with contextlib.suppress(Exception):
            if self.running():
                self.stop("immediate")

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def query(self, sql: str, database: str = "postgres") -> list[tuple[Any, ...]]:
        import psycopg

        with psycopg.connect(self.url(database), autocommit=True, connect_timeout=5) as conn:
            cursor = conn.execute(sql)
            return list(cursor.fetchall()) if cursor.description else []


def postgres_folder(folder: Path) -> None:
    """Make `folder` for the postgres user (its parent, a root temporary folder, was 0700)."""
    folder.parent.chmod(0o755)
    folder.mkdir()
    shutil.chown(folder, "postgres", "postgres")


# --- HAProxy ------------------------------------------------------------------------------


@dataclass
class HAProxy:
    folder: Path
    port: int
    servers: dict[str, str]  # name -> "address:port"
    process: subprocess.Popen[bytes] | None = None

    @property
    def socket_path(self) -> Path:
        return self.folder / "haproxy.sock"

    def config(self) -> str:
        servers = "".join(
            f"    server {name} {where} check\n" for name, where in self.servers.items()
        )
        return f"""global
    stats socket {self.socket_path} mode 600 level admin
    maxconn 512

defaults
    mode http
    timeout connect 1s
    timeout client 30s
    timeout server 30s
    # A refused connection fails a check at once; the timeout only matters for a node
    # that accepts but does not answer, and must outlast a busy survivor's queue.
    timeout check 2s
    # A connection the dead node refuses is tried again, on the other node (redispatch):
    # nothing was sent yet, so even a POST is safe to retry. A request already sent is
    # never replayed (no retry-on beyond the default conn-failure): an ingest could be
    # stored twice.
    retries 3
    option redispatch 1
    # No pool of idle server connections. granian's --backpressure (vigie serve: 2 per
    # thread) bounds the connections a worker accepts, not the requests: with HAProxy's
    # default (http-reuse safe) its idle keep-alive connections filled that budget once one
    # node took all the load, the survivor's health checks timed out (Layer7 timeout,
    # 2000 ms) and HAProxy took it out too, three runs in four.
    http-reuse never

frontend portal
    bind 127.0.0.1:{self.port}
    default_backend nodes

backend nodes
    balance roundrobin
    option httpchk
    http-check send meth GET uri /health ver HTTP/1.1 hdr Host localhost
    http-check expect status 200
    # Checked every 250 ms; two failures in a row mark a server DOWN (about 0.5 s after
    # a kill, well within the 3 s asked), two successes bring it back.
    default-server inter 250ms fastinter 250ms downinter 1s fall 2 rise 2
{servers}"""

    def start(self) -> None:
        path = self.folder / "haproxy.cfg"
        path.write_text(self.config(), encoding="utf-8")
        haproxy = which("haproxy") or "haproxy"
        _run(haproxy, "-c", "-q", "-f", str(path))
        log = (self.folder / "haproxy.log").open("wb")
        self.process = subprocess.Popen(
            [haproxy, "-db", "-f", str(path)],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        wait_until("haproxy's runtime API", self.socket_path.exists, 30)

    def command(self, line: str) -> str:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(5)
            sock.connect(str(self.socket_path))
            sock.sendall(line.encode() + b"\n")
            chunks = []
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks).decode()

    def status(self) -> dict[str, str]:
        """Each server's state as HAProxy sees it: UP, DOWN, "UP 1/2" (going down)..."""
        rows = csv.DictReader(self.command("show stat").lstrip("# ").splitlines())
        return {
            row["svname"]: row["status"]
            for row in rows
            if row["pxname"] == "nodes" and row["svname"] in self.servers
        }

    def served(self) -> dict[str, int]:
        """Requests each server took so far (HAProxy's `stot` counter)."""
        rows = csv.DictReader(self.command("show stat").lstrip("# ").splitlines())
        return {
            row["svname"]: int(row["stot"])
            for row in rows
            if row["pxname"] == "nodes" and row["svname"] in self.servers
        }

    def stop(self) -> None:
        if self.process is not None:
            stop_group(self.process)


def stop_group(process: subprocess.Popen[Any], sig: int = signal.SIGTERM) -> None:
    """Signal the process group, SIGKILL what is left; never raises."""
    for signum in (sig, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signum)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=10)
