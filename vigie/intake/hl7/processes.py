"""`vigie intake mllp --processes N`: N listener processes on one port (SO_REUSEPORT).

One process stores messages with one core: its event loop, its parsing and sealing and its
rounds all take turns on one interpreter lock. With N processes the kernel spreads the
labs' connections across N listening sockets bound to the same port (SO_REUSEPORT), and
each process runs the whole server of `server.py` on its own: its own connections, its own
rounds, its own database connection. Nothing is shared but the database, the vault and the
audit chain, which already serialise writers across processes (the audit append lock; on
SQLite, the write lock). So every guarantee of one process holds in each: an ACK only after
the commit that holds its message; a message resent on another connection, landing in
another process, is found taken (the ReceivedMessage's unique key) and answered as a
duplicate; the exposure and TLS checks run in every process before it listens.

The parent forks the listeners before any thread or database connection exists (Django is
set up, nothing more), prints the one "listening on" line once every listener is ready,
forwards SIGTERM/SIGINT to each (each drains: its connections finish the message in hand),
and waits for them. A listener that dies on its own takes the group down (the others are
stopped, the parent exits non-zero), so that systemd restarts the service whole rather than
leaving it silently short of a listener; a listener whose parent dies is stopped by the
kernel (PR_SET_PDEATHSIG), so nothing keeps the port after a kill -9 of the parent.

The kernel lets any process of the same user join a SO_REUSEPORT group: a second `vigie
intake mllp --processes N` started by mistake on the same port (a manual test beside the
service) would bind too, and silently take a share of the labs' connections. The group
therefore claims its port first (`claim_port`), and a second group is refused.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import logging
import os
import signal
import socket
import sys
from collections.abc import Callable
from typing import TextIO

from django.db import connection, connections

logger = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1


def default_processes() -> int:
    """One listener per core on PostgreSQL: each is bound to one core by its interpreter
    lock, and the database takes their rounds side by side. One on SQLite, whose write lock
    takes the rounds of several processes one at a time: with two listeners each round is
    smaller, and bench/mllp.py measured more CPU per message and no more messages/s."""
    if connection.vendor == "sqlite":
        return 1
    return max(1, os.cpu_count() or 1)


def reserve_port(host: str, port: int) -> tuple[socket.socket, int]:
    """A socket bound (not listening) to host:port with SO_REUSEPORT, and its port: with
    port 0 the kernel picks one here, and every listener then binds that same port. Kept
    open until the listeners are up so that the port stays this service's; not listening,
    it is never handed a connection."""
    family, kind, proto, _name, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    placeholder = socket.socket(family, kind, proto)
    try:
        placeholder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        placeholder.bind(address)
    except BaseException:
        placeholder.close()
        raise
    return placeholder, int(placeholder.getsockname()[1])


class PortTaken(Exception):
    """Another group of listeners already holds this port."""


def claim_port(port: int) -> socket.socket:
    """A socket that holds the claim on `port` for as long as it, or a listener that
    inherited it, is open; PortTaken if another group holds it.

    An abstract Unix socket named after the port: its name lives in the network namespace,
    as the port does, and vanishes with the last process holding it, so a kill -9 leaves
    nothing to clean up, and no file in a folder two installations might not share.
    """
    claim = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        claim.bind(f"\0vigie-mllp-port-{port}")
    except OSError as exc:
        claim.close()
        if exc.errno == errno.EADDRINUSE:
            raise PortTaken(port) from None
        raise
    return claim


def _die_with_parent(parent: int) -> None:
    """Ask the kernel to SIGTERM this process when its parent dies (Linux)."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:  # it died before the request: nobody would stop this one
        raise SystemExit(1)


def run_group(
    count: int,
    serve: Callable[[int, Callable[[], None]], None],
    announce: Callable[[], None],
    stdout: TextIO,
) -> None:
    """Fork `count` listeners, each running `serve(index, ready)` (it calls `ready()` once
    it listens); `announce()` once all are ready; return when all have stopped (SystemExit
    when one failed)."""
    # Nothing of the parent's database connections may cross the fork (two processes on one
    # SQLite handle or one PostgreSQL socket corrupt each other's state).
    connections.close_all()
    read_end, write_end = os.pipe()
    children: dict[int, int] = {}
    parent = os.getpid()
    for index in range(count):
        pid = os.fork()
        if pid == 0:  # the listener
            os.close(read_end)
            _child(index, serve, write_end, parent)
        children[pid] = index
    os.close(write_end)
    stopping = False

    def stop(signum: int = signal.SIGTERM, _frame: object = None) -> None:
        nonlocal stopping
        stopping = True
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)

    previous = {s: signal.signal(s, stop) for s in (signal.SIGTERM, signal.SIGINT)}
    failed = False
    try:
        ready = 0
        with os.fdopen(read_end, "rb", buffering=0) as pipe:
            # One byte per listener ready; end of file when every write end is closed (all
            # ready, or one died before it was).
            while ready < count and pipe.read(1):
                ready += 1
        if ready == count and not stopping:
            announce()
        while children:
            try:
                pid, status = os.wait()
            except ChildProcessError:
                break
            index = children.pop(pid)
            code = os.waitstatus_to_exitcode(status)
            if code != 0 or not stopping:
                failed = failed or not stopping or code != 0
                logger.error("mllp listener %d (pid %d) ended with %d", index, pid, code)
                if not stopping:
                    stop()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    stdout.flush()
    if failed:
        raise SystemExit("an MLLP listener process failed; every listener was stopped")


def _child(
    index: int, serve: Callable[[int, Callable[[], None]], None], ready_fd: int, parent: int
) -> None:
    """The listener's whole life; never returns into the parent's code."""
    code = 0
    try:
        _die_with_parent(parent)

        def ready() -> None:
            os.write(ready_fd, b"+")
            os.close(ready_fd)

        serve(index, ready)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
        if exc.code and not isinstance(exc.code, int):
            print(exc.code, file=sys.stderr)
    except BaseException:
        logger.exception("mllp listener %d failed", index)
        code = 1
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
            logging.shutdown()
        # Not a return: the parent's stack (Django's command, atexit hooks) is not ours.
        os._exit(code)
