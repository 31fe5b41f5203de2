"""`vigie intake mllp`: HL7 v2 over MLLP (TCP, optionally TLS), one ACK per message.

Who may write: HL7 v2 has no authentication of its own, and whoever reaches the
port could otherwise file documents under any patient's INS. So, as IHE ATNA prescribes,
a listener on anything but loopback requires mutual TLS: `--tls-cert/--tls-key` (the
server's certificate), `--tls-client-ca` (the CA that signs the labs' certificates) and
optionally `--tls-crl`; it refuses to start otherwise. The handshake refuses a client
without a certificate, with one from another CA, expired or listed in the CRL; then the
certificate's SHA-256 must map to an active `MllpSender` (`vigie mllpsender add --cert`),
or the connection is closed before a byte is read. Plain MLLP (or TLS without client
certificates) is for loopback only, for one configured sender (`--sender NAME`: a local
integration engine, or stunnel terminating the TLS).

MLLP frames a message as <VT> message <FS><CR>. A connection carries any number of
messages, one after the other, each acknowledged before the next is read (the order of
ACKs is the order of messages, as senders expect); connections are served concurrently.

Group commit: every connection hands its message to one committer, which stores whatever
messages are waiting, from all connections, as one round (`batch.handle_many`): each is
parsed and sealed on its own, then the round's blobs are fsynced together, its rows and
audit events commit in one transaction, and only then does each connection write its ACK.
While a round is on the disk the next one gathers, so under load a message costs a share of
the fsyncs instead of three of its own, and an ACK still never precedes its commit. The
Django work runs in worker threads so the event loop never blocks on the database or the
disk; one round at a time (SQLite serialises writers anyway). `--processes N` runs N such
servers on the one port, each with its own rounds, to use N cores (`processes.py`).

Refusals without a message to read: a frame larger than --max-message-bytes is read to its
end and discarded, then answered AR (the connection stays usable); bytes outside any frame
(an HTTP request, a port scanner) get one AR and the connection is closed.

SIGTERM/SIGINT: stop accepting, let each connection finish the message in hand and send
its ACK, then exit.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import logging
import ssl
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any, TextIO, TypeVar

from django.db import close_old_connections, connections
from hl7.client import CR, EB, SB

from vigie.audit.log import record
from vigie.intake.hl7 import ack
from vigie.intake.hl7.handler import Reply, refuse
from vigie.intake.hl7.parser import ErrorCode, Header, HL7Error, peek_header
from vigie.intake.hl7.processes import (
    PortTaken,
    claim_port,
    default_processes,
    reserve_port,
    run_group,
)
from vigie.intake.hl7.rounds import MessageCommitter, in_worker
from vigie.intake.models import MllpSender
from vigie.intake.senders import fingerprint, loopback_sender, sender_for_certificate
from vigie.lib.shutdown import stop_on_signals

logger = logging.getLogger(__name__)
_T = TypeVar("_T")

DEFAULT_MAX_MESSAGE_BYTES = 32 * 1024 * 1024
# How much of an oversized frame is kept: enough for MSH, so its AR names the control id.
_HEAD_BYTES = 4096
_WHITESPACE = frozenset(b" \t\r\n")
_SWITCH_INTERVAL_S = 0.0005


@dataclass(frozen=True)
class Frame:
    """One unit of work for the connection: a message, or a framing problem to answer."""

    payload: bytes = b""
    problem: str = ""
    # Close the connection after answering (the peer does not speak MLLP).
    close: bool = False


@dataclass
class Framer:
    """MLLP deframing, byte-fed: knows nothing of sockets, so it is tested on its own."""

    max_bytes: int
    _buffer: bytearray = field(default_factory=bytearray)
    _inside: bool = False
    _size: int = 0
    _oversized: bool = False

    def feed(self, data: bytes) -> Iterator[Frame]:
        position = 0
        while position < len(data):
            if not self._inside:
                start = data.find(SB, position)
                junk = data[position : start if start != -1 else len(data)]
                if any(b not in _WHITESPACE for b in junk):
                    yield Frame(
                        payload=bytes(junk[:_HEAD_BYTES]),
                        problem="data outside an MLLP frame: each message must be sent as "
                        "<VT> message <FS><CR> (0x0B ... 0x1C 0x0D)",
                        close=True,
                    )
                    return
                if start == -1:
                    return
                self._inside, self._size, self._oversized = True, 0, False
                self._buffer.clear()
                position = start + 1
                continue
            end = data.find(EB, position)
            restart = data.find(SB, position, end if end != -1 else len(data))
            if restart != -1:
                # A new <VT> before the <FS>: the previous message was cut short.
                head = bytes(self._buffer[:_HEAD_BYTES] + data[position:restart][:_HEAD_BYTES])
                self._inside = False
                position = restart
                yield Frame(
                    payload=head,
                    problem="incomplete MLLP frame: a new message (<VT>) started before the "
                    "end (<FS><CR>) of the previous one",
                )
                continue
            chunk = data[position : end if end != -1 else len(data)]
            self._append(chunk)
            if end == -1:
                return
            self._inside = False
            position = end + 1
            if data[position : position + 1] == CR:
                position += 1
            if self._oversized:
                yield Frame(
                    payload=bytes(self._buffer),
                    problem=f"message larger than the limit of {self.max_bytes} bytes "
                    f"({self._size} bytes received); nothing was kept",
                )
            else:
                yield Frame(payload=bytes(self._buffer))
            self._buffer.clear()

    def _append(self, chunk: bytes) -> None:
        self._size += len(chunk)
        if self._oversized:
            return
        if self._size > self.max_bytes:
            # Keep the head only (for MSH), drop the rest as it comes: memory stays bounded.
            self._oversized = True
            self._buffer.extend(chunk)
            del self._buffer[_HEAD_BYTES:]
            return
        self._buffer.extend(chunk)


def frame(message: bytes) -> bytes:
    framed: bytes = SB + message + EB + CR
    return framed


@dataclass
class Settings:
    host: str = "127.0.0.1"
    port: int = 2575
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    workers: int = 4
    idle_timeout: float = 300.0
    local_authority: str = ""
    tls_cert: str = ""
    tls_key: str = ""
    # Mutual TLS: the CA that signs the senders' client certificates, and its CRL.
    tls_client_ca: str = ""
    tls_crl: str = ""
    # Without client certificates (loopback only): the one sender this listener speaks for.
    sender: str = ""
    # Listener processes on the port; above 1 each binds it with SO_REUSEPORT.
    processes: int = 1
    process_index: int = 0

    @property
    def mutual_tls(self) -> bool:
        return bool(self.tls_cert and self.tls_client_ca)


def is_loopback(host: str) -> bool:
    """Whether binding `host` keeps the port unreachable from any other machine."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip().strip("[]")).is_loopback
    except ValueError:
        return False  # a name, "" or "0.0.0.0"-like: assume it reaches the network


def exposure_problem(settings: Settings) -> str:
    """Why this listener must not start (the whole sentence), or "" when it may."""
    if not is_loopback(settings.host) and not settings.mutual_tls:
        return (
            f"--host {settings.host or '(all addresses)'} reaches the network: MLLP beyond "
            "loopback needs mutual TLS (--tls-cert, --tls-key and --tls-client-ca), or anyone "
            "who reaches the port could file documents under any patient; bind 127.0.0.1 for "
            "a local integration engine"
        )
    return ""


class MllpServer:
    """The asyncio server; `serve()` runs until `stop()`."""

    def __init__(self, settings: Settings) -> None:
        # Here too, not only in the command's option check: no caller gets a listener beyond
        # loopback that anyone could write through.
        problem = exposure_problem(settings)
        if problem:
            raise ValueError(problem)
        self.settings = settings
        self.executor = ThreadPoolExecutor(
            max_workers=settings.workers, thread_name_prefix="mllp-worker"
        )
        self.rounds = MessageCommitter(
            settings.local_authority,
            on_revoked=lambda s: _refuse_connection(None, f"the sender {s.name!r} was revoked"),
        )
        self.stopping = asyncio.Event()
        self.ready = asyncio.Event()
        self.port = 0
        self._connections: dict[asyncio.Task[None], asyncio.StreamWriter] = {}
        self._busy: set[asyncio.Task[None]] = set()  # those with a message in hand

    def _ssl_context(self) -> ssl.SSLContext | None:
        if not self.settings.tls_cert:
            return None
        # A bare server context, not create_default_context(): that one would also trust
        # the system's public CAs for client certificates.
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(self.settings.tls_cert, self.settings.tls_key or None)
        if self.settings.tls_client_ca:
            context.verify_mode = ssl.CERT_REQUIRED
            context.load_verify_locations(cafile=self.settings.tls_client_ca)
            if self.settings.tls_crl:
                context.load_verify_locations(cafile=self.settings.tls_crl)
                context.verify_flags |= ssl.VERIFY_CRL_CHECK_LEAF
        return context

    def identify(self, writer: asyncio.StreamWriter) -> MllpSender | None:
        """The active sender this connection speaks for (a worker thread: database)."""
        if self.settings.mutual_tls:
            tls = writer.get_extra_info("ssl_object")
            der = tls.getpeercert(binary_form=True) if tls is not None else None
            return sender_for_certificate(der) if der else None
        return loopback_sender(self.settings.sender)

    async def _work(self, item: Frame, sender: MllpSender) -> Reply | None:
        """The ACK for one frame; None when the sender was revoked meanwhile (hang up)."""
        loop = asyncio.get_running_loop()
        if item.problem:
            return await loop.run_in_executor(self.executor, _refuse_frame, item, sender)
        try:
            return await self.rounds.submit(item.payload, sender)
        except Exception:
            # The round could not even be read (the database is down): no ACK is honest, so
            # hang up; the sender sends the message again later.
            logger.exception("mllp: a round failed before any answer; closing the connection")
            return None

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None  # noqa: S101 (always inside a task here)
        self._connections[task] = writer
        peer = writer.get_extra_info("peername")
        framer = Framer(self.settings.max_message_bytes)
        try:
            loop = asyncio.get_running_loop()
            sender = await loop.run_in_executor(
                self.executor, lambda: in_worker(lambda: self.identify(writer))
            )
            if sender is None:
                # A certificate the CA signed but no administrator mapped (or revoked): it
                # speaks for nobody. Closed before a byte of it is read.
                await loop.run_in_executor(
                    self.executor, _refuse_connection, writer, "no active sender"
                )
                return
            while not self.stopping.is_set():
                # A deadline on the read, not wait_for(): that wraps each read in a task of
                # its own, a cost paid on every message.
                async with asyncio.timeout(self.settings.idle_timeout):
                    data = await reader.read(65536)
                if not data:
                    break
                self._busy.add(task)
                close = False
                for item in framer.feed(data):
                    reply = await self._work(item, sender)
                    if reply is None:
                        close = True
                        break
                    writer.write(frame(reply.ack))
                    await writer.drain()
                    # An accepted message is in the audit log already (intake.received): a
                    # log line for each cost a twentieth of the server's CPU per message.
                    level = logging.DEBUG if reply.code == "AA" else logging.INFO
                    logger.log(level, "mllp %s: %s %s", peer, reply.code, reply.control_id)
                    if item.close:
                        close = True
                        break
                self._busy.discard(task)
                if close:
                    break
        except (TimeoutError, ConnectionError, ssl.SSLError, asyncio.IncompleteReadError) as exc:
            logger.info("mllp %s: connection ended (%s)", peer, type(exc).__name__)
        finally:
            self._connections.pop(task, None)
            self._busy.discard(task)
            writer.close()
            with contextlib.suppress(ConnectionError, ssl.SSLError, OSError):
                await writer.wait_closed()

    async def serve(self) -> None:
        server = await asyncio.start_server(
            self._connection,
            self.settings.host,
            self.settings.port,
            ssl=self._ssl_context(),
            limit=65536,
            reuse_port=self.settings.processes > 1 or None,
        )
        self.port = server.sockets[0].getsockname()[1]
        rounds = asyncio.create_task(self.rounds.run())
        self.ready.set()
        try:
            async with server:
                await self.stopping.wait()
                server.close()
                await self._drain()
        finally:
            rounds.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await rounds
            self.rounds.shutdown()
            self.executor.shutdown(wait=True)

    async def _drain(self, timeout: float = 30.0) -> None:
        """Idle connections are closed now; busy ones finish their message and its ACK."""
        for task, writer in list(self._connections.items()):
            if task not in self._busy:
                # Cut, not cancelled: the read ends as at a hang-up (Python 3.11 logs each
                # cancelled connection task as a traceback). Nothing is in flight to flush.
                writer.transport.abort()
        pending = list(self._connections)
        if pending:
            _done, late = await asyncio.wait(pending, timeout=timeout)
            for task in late:
                task.cancel()

    def stop(self) -> None:
        self.stopping.set()


def _refuse_frame(item: Frame, sender: MllpSender) -> Reply:
    header = peek_header(item.payload) if item.payload.lstrip().startswith(b"MSH") else None
    error = HL7Error(ack.REJECT, ErrorCode.SEGMENT_SEQUENCE, item.problem)
    return refuse(header or Header(), error, sender=sender)


def _refuse_connection(writer: asyncio.StreamWriter | None, why: str) -> None:
    """Audit a connection that speaks for no active sender (it is then closed)."""
    facts: dict[str, Any] = {"channel": "hl7", "why": why}
    if writer is not None:
        peer = writer.get_extra_info("peername")
        facts["peer"] = str(peer[0]) if peer else ""
        tls = writer.get_extra_info("ssl_object")
        der = tls.getpeercert(binary_form=True) if tls is not None else None
        if der:
            facts["fingerprint"] = fingerprint(der)
    close_old_connections()
    try:
        record("intake.mllp.refused", outcome="denied", reason=why, extra=facts)
    finally:
        close_old_connections()


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: local only)"
    )
    parser.add_argument("--port", type=int, default=2575, help="TCP port (default 2575; 0: any)")
    parser.add_argument("--tls-cert", default="", help="PEM certificate chain: serve MLLP over TLS")
    parser.add_argument("--tls-key", default="", help="PEM private key of --tls-cert")
    parser.add_argument(
        "--tls-client-ca",
        default="",
        help="PEM CA that signs the senders' client certificates: mutual TLS (required "
        "beyond loopback); each certificate must be mapped with `vigie mllpsender add --cert`",
    )
    parser.add_argument(
        "--tls-crl", default="", help="PEM certificate revocation list of --tls-client-ca"
    )
    parser.add_argument(
        "--sender",
        default="",
        help="without --tls-client-ca (loopback only): the MLLP sender this listener speaks "
        "for (`vigie mllpsender add NAME --source SYSTEM --loopback`)",
    )
    parser.add_argument(
        "--max-message-bytes",
        type=int,
        default=DEFAULT_MAX_MESSAGE_BYTES,
        help=f"largest message accepted (default {DEFAULT_MAX_MESSAGE_BYTES})",
    )
    parser.add_argument(
        "--workers", type=int, default=4, help="messages stored concurrently (default 4)"
    )
    parser.add_argument(
        "--processes",
        type=int,
        default=None,
        help="listener processes sharing the port, each with its own rounds of group commit, "
        "to use several cores (default: one per core on PostgreSQL, one on SQLite; here "
        f"{default_processes()})",
    )
    parser.add_argument(
        "--idle-timeout",
        type=float,
        default=300.0,
        help="seconds before an idle connection is closed (default 300)",
    )
    parser.add_argument(
        "--local-authority",
        default="",
        help="PID-3 assigning authority of this clinic's own IPP (matched on Patient.ipp)",
    )


def _settings(options: dict[str, Any]) -> Settings:
    if options.get("tls_key") and not options.get("tls_cert"):
        raise SystemExit("--tls-key needs --tls-cert")
    if int(options["max_message_bytes"]) < 1024:
        raise SystemExit("--max-message-bytes must be at least 1024")
    if int(options["workers"]) < 1:
        raise SystemExit("--workers must be at least 1")
    processes = options.get("processes")
    processes = default_processes() if processes is None else int(processes)
    if processes < 1:
        raise SystemExit("--processes must be at least 1")
    if options.get("tls_client_ca") and not options.get("tls_cert"):
        raise SystemExit("--tls-client-ca needs --tls-cert and --tls-key (the server's own)")
    if options.get("tls_crl") and not options.get("tls_client_ca"):
        raise SystemExit("--tls-crl needs --tls-client-ca")
    if options.get("tls_client_ca") and options.get("sender"):
        raise SystemExit(
            "--sender is for a listener without client certificates: with --tls-client-ca, "
            "each certificate names its sender"
        )
    if not options.get("tls_client_ca") and not options.get("sender"):
        raise SystemExit(
            "say who this listener speaks for: --tls-client-ca (each lab's certificate names "
            "its sender) or, on loopback, --sender NAME"
        )
    chosen = Settings(
        host=options["host"],
        port=int(options["port"]),
        max_message_bytes=int(options["max_message_bytes"]),
        workers=int(options["workers"]),
        idle_timeout=float(options["idle_timeout"]),
        local_authority=options.get("local_authority") or "",
        tls_cert=options.get("tls_cert") or "",
        tls_key=options.get("tls_key") or "",
        tls_client_ca=options.get("tls_client_ca") or "",
        tls_crl=options.get("tls_crl") or "",
        sender=options.get("sender") or "",
        processes=processes,
    )
    problem = exposure_problem(chosen)
    if problem:
        raise SystemExit(problem)
    return chosen


def run(options: dict[str, Any], stdout: TextIO) -> None:
    """The command's body: serve until SIGTERM/SIGINT."""
    settings = _settings(options)
    # Every ACK crosses threads twice (event loop → round threads → event loop), and a
    # thread waiting for the interpreter lock waits out the holder's switch interval (5 ms
    # by default): with 8 senders each waiting for its ACK, that wait was the latency, and
    # the latency the throughput. 0.5 ms: +10-40 % messages/s in bench/mllp.py, same CPU;
    # 0.1 ms was slower again. This process runs nothing else.
    sys.setswitchinterval(_SWITCH_INTERVAL_S)
    if settings.processes == 1:
        asyncio.run(_main(settings, stdout, lambda: None))
        return
    if settings.sender:  # once, in the parent: a typo fails the start, not N listeners
        with ThreadPoolExecutor(max_workers=1) as apart:
            apart.submit(_check_sender_apart, settings.sender).result()
    try:
        placeholder, port = reserve_port(settings.host, settings.port)
    except OSError as exc:
        raise SystemExit(
            f"cannot listen on {settings.host}:{settings.port}: {exc.strerror or exc}"
        ) from None
    try:
        claim = claim_port(port)
    except PortTaken:
        placeholder.close()
        raise SystemExit(
            f"another `vigie intake mllp` already listens on port {port}; stop it first "
            "(two groups would share the labs' connections)"
        ) from None
    shared = replace(settings, port=port)

    def serve(index: int, ready: Callable[[], None]) -> None:
        placeholder.close()
        asyncio.run(_main(replace(shared, process_index=index), None, ready))

    def announce() -> None:
        placeholder.close()
        _announce(shared, port, stdout)

    # The claim is inherited by the listeners: it is held until the last of them ends.
    with claim, placeholder:
        run_group(settings.processes, serve, announce, stdout)
    stdout.write("stopped\n")
    stdout.flush()


def _check_sender(name: str) -> None:
    close_old_connections()
    try:
        if loopback_sender(name) is None:
            raise SystemExit(
                f"no active loopback MLLP sender named {name!r}: add it with `vigie mllpsender "
                f"add {name} --source SYSTEM --loopback`"
            )
    finally:
        close_old_connections()


def _check_sender_apart(name: str) -> None:
    """`_check_sender` in a thread of its own, as `_main` runs it: the caller's connection
    (a test's transaction) is left alone, and this thread's is closed before any fork."""
    try:
        _check_sender(name)
    finally:
        connections.close_all()


async def _main(settings: Settings, stdout: TextIO | None, ready: Callable[[], None]) -> None:
    if settings.sender:
        await asyncio.to_thread(_check_sender, settings.sender)
    server = MllpServer(settings)
    loop = asyncio.get_running_loop()
    with stop_on_signals(lambda: loop.call_soon_threadsafe(server.stop)):
        await _serve(server, settings, stdout, ready)


def _announce(settings: Settings, port: int, stdout: TextIO) -> None:
    scheme = "mllps" if settings.tls_cert else "mllp"
    stdout.write(f"listening on {scheme}://{settings.host}:{port}\n")
    stdout.flush()


async def _serve(
    server: MllpServer, settings: Settings, stdout: TextIO | None, ready: Callable[[], None]
) -> None:
    """Serve until stopped; `stdout` (None in a listener of several) says when it listens
    and when it stopped, `ready()` is called once it listens."""
    serving = asyncio.create_task(server.serve())
    listening = asyncio.create_task(server.ready.wait())
    await asyncio.wait({serving, listening}, return_when=asyncio.FIRST_COMPLETED)
    if serving.done():
        listening.cancel()
        await serving  # raises the bind error (address in use, bad certificate)
        return
    facts = {
        "host": settings.host,
        "port": server.port,
        "tls": bool(settings.tls_cert),
        "mutual_tls": settings.mutual_tls,
        "sender": settings.sender,
        "process": settings.process_index,
        "processes": settings.processes,
    }
    await asyncio.to_thread(record, "intake.mllp.started", extra=facts)
    if stdout is not None:
        _announce(settings, server.port, stdout)
    ready()
    await serving
    await asyncio.to_thread(record, "intake.mllp.stopped", extra=facts)
    if stdout is not None:
        stdout.write("stopped\n")
        stdout.flush()
