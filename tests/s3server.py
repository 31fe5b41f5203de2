"""A real S3 API server for the whole-system tests, and a switchable proxy in front of it.

The server is moto's standalone server (`moto_server`, from moto[server]) started as its own
process on loopback: no object store such as MinIO is packaged on PyPI or Debian, and moto
honours `If-None-Match: *` on PutObject and CompleteMultipartUpload (412), which write-once
rests on. The proxy is a real HTTP server too; it forwards to moto unless told to be slow
(never answers), failing (500 InternalError), or forgetful (drops If-None-Match, as a server
without conditional writes would).
"""

from __future__ import annotations

import http.client
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


@contextmanager
def moto_server(host: str = "127.0.0.1") -> Iterator[str]:
    """moto on `host` (an address of this machine: loopback, or one a test's network
    namespaces reach, such as a bridge's); yields its base URL."""
    port = free_port(host)
    program = Path(sys.executable).parent / "moto_server"
    process = subprocess.Popen(
        [str(program), "-H", host, "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with socket.create_connection((host, port), timeout=0.5):
                    break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("moto_server did not start") from None
                time.sleep(0.1)
        yield f"http://{host}:{port}"
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class StoreProxy:
    """Forwards to `upstream`; `mode` is "pass", "slow", "fail" or "forgetful"."""

    def __init__(self, upstream: str) -> None:
        self.upstream = urlsplit(upstream)
        self.mode = "pass"
        self.requests = 0
        self._release = threading.Event()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                pass

            def _any(self) -> None:
                proxy.requests += 1
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                if proxy.mode == "slow":
                    proxy._release.wait(30)
                    self.close_connection = True
                    return
                if proxy.mode == "fail":
                    payload = b"<Error><Code>InternalError</Code><Message>down</Message></Error>"
                    self.send_response(500)
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                    return
                headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
                if proxy.mode == "forgetful":
                    headers = {k: v for k, v in headers.items() if k.lower() != "if-none-match"}
                upstream = http.client.HTTPConnection(
                    proxy.upstream.hostname or "127.0.0.1", proxy.upstream.port, timeout=30
                )
                try:
                    upstream.request(self.command, self.path, body=body, headers=headers)
                    answer = upstream.getresponse()
                    data = answer.read()
                    self.send_response(answer.status)
                    # A HEAD answer's Content-Length is the object's size: passed as it is.
                    dropped = {"transfer-encoding", "connection"}
                    if self.command != "HEAD":
                        dropped.add("content-length")
                    for name, value in answer.getheaders():
                        if name.lower() not in dropped:
                            self.send_header(name, value)
                    if self.command != "HEAD":
                        self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(data)
                finally:
                    upstream.close()

            do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _any  # noqa: N815

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> StoreProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._release.set()
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(10)
