"""The processes a benchmark starts: free ports, start and stop in groups, wait for HTTP.

Shared by every stage that runs servers (fetch, ingest, Orthanc, cold start), so that each
one stops what it started, whole process groups included, whatever happens.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def stop_group(process: subprocess.Popen[Any]) -> None:
    """SIGTERM the process group, wait, then SIGKILL whatever is left."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=10)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=5)


@dataclass
class Processes:
    """Everything this benchmark started, stopped in reverse order whatever happens."""

    started: list[subprocess.Popen[Any]] = field(default_factory=list)

    def start(self, argv: list[str], log: Path, **kwargs: Any) -> subprocess.Popen[bytes]:
        with log.open("ab") as out:
            process = subprocess.Popen(
                argv,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                **kwargs,
            )
        self.started.append(process)
        return process

    def stop_all(self) -> None:
        for process in reversed(self.started):
            stop_group(process)
        self.started.clear()


def wait_http(port: int, path: str, process: subprocess.Popen[Any], log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"{log.stem} exited {process.returncode}:\n{tail(log)}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", path)
            conn.getresponse().read()
            conn.close()
            return
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"nothing answered on port {port} within 60 s:\n{tail(log)}")


def tail(log: Path) -> str:
    try:
        return log.read_text(encoding="utf-8", errors="replace")[-3000:]
    except OSError:
        return ""


def find(command: str) -> str | None:
    return shutil.which(command) or shutil.which(command, path="/usr/sbin:/usr/bin:/sbin:/bin")


def tree_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of `pid` and every live descendant (granian's and nginx's
    workers, Orthanc's threads). The figure that means something on a shared 2-core machine,
    where req/s moves with whatever else runs: read it before and after a load run and divide
    the difference by the requests served. A worker that exits in between takes its seconds
    with it, so servers are measured while they keep their workers (all of ours do)."""
    try:
        root = psutil.Process(pid)
        processes = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0.0
    total = 0.0
    for process in processes:
        try:
            times = process.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


def production_env(home: Path) -> dict[str, str]:
    """A production-mode environment for a throwaway installation in `home` (its keys beside
    it, never in it), without the caller's VIGIE_* or DATABASE_URL."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("VIGIE_") and k not in {"DATABASE_URL", "DJANGO_SETTINGS_MODULE"}
    }
    env.update(
        VIGIE_HOME=str(home),
        # Beside the throwaway home: production's default is the host's /etc/vigie/keys.
        VIGIE_KEYS_DIR=str(home.with_name(f"{home.name}-keys")),
        VIGIE_MODE="production",
        VIGIE_TLS="false",
        VIGIE_SSL_REDIRECT="false",
        PYTHONUNBUFFERED="1",
    )
    return env
