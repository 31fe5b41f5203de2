"""The outside-in fetcher: runs ON THE VANTAGE POINT, as an outsider would see the portal.

Standard library only, no Django, no vigie imports: the guard runs this file's source as
`[*vantage, "python3", "-I", "-c", <source>]` (over ssh, in another network namespace...),
where nothing of Vigie is installed. It holds no secret: the guard hands it ready-made
headers (the signed probe header), nothing else.

Input (JSON on stdin)::

    {"timeout": 5, "deadline": 20, "ca_file": "/path/ca.pem" | null, "connect_timeout": 2,
     "requests": [{"url": "https://host/path", "headers": {...}, "want_text": false,
                   "expect": "text the page must hold" | absent}],
     "connect": ["host:port", ...]}

Output (JSON on stdout)::

    {"results": [{"url", "status", "headers", "flags", "bytes", "error", "error_kind",
                  "tls", "text", "expected"}],
     "connect": {"host:port": "open"|"closed"|"timeout"|"skipped"}}

The TCP connects (the guard's port scan) run at the same time as the requests, in their
own pool with their own short timeout, so a scan of filtered ports cannot stretch the round
beyond the probe interval. `expected` (only when `expect` was given) says whether the
body's first 64 KiB hold that text: the guard learns if the page is the portal's own, the
fetcher returns no more of it.

Each request is one GET, without cookies or credentials, never following a redirect (an
outsider's browser would, but the probe must judge the first answer: a redirect to the login
page is safe, the document behind a redirect is the server's business), reading at most
64 KiB. No proxy is used on purpose: the question is what the open internet reaches.
"""

from __future__ import annotations

import http.client
import json
import socket
import ssl
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from typing import Any
from urllib.parse import urlsplit

MAX_BODY = 64 * 1024
MAX_TEXT = 2048
WORKERS = 8
# Connects are cheap and mostly refused at once; many at a time keep a scan of dropped
# (silent) ports within a few connect timeouts.
CONNECT_WORKERS = 32
USER_AGENT = "vigie-probe/1"
REPORTED_HEADERS = (
    "content-type",
    "cache-control",
    "x-robots-tag",
    "content-disposition",
    "location",
)
# What a medical document looks like in its first bytes, whatever the server calls it.
_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "png"),
    (b"\xff\xd8\xff", "jpeg"),
    (b"PK\x03\x04", "zip"),
    (b"MSH|", "hl7"),
    (b"\x0bMSH|", "hl7"),  # an MLLP-framed HL7 message
)
_LISTING_MARKERS = (b"Index of /", b"Directory listing for", b"<title>Index of")


def document_flags(body: bytes) -> list[str]:
    """Names of the document formats `body` starts like, plus a directory-listing marker."""
    flags: list[str] = []
    # PDF readers accept the header anywhere in the first KiB, so a leak may too.
    if b"%PDF-" in body[:1024]:
        flags.append("pdf")
    if len(body) >= 132 and body[128:132] == b"DICM":
        flags.append("dicom")
    stripped = body.lstrip()
    for magic, name in _MAGIC:
        if stripped.startswith(magic) and name not in flags:
            flags.append(name)
    if any(marker in body[:4096] for marker in _LISTING_MARKERS):
        flags.append("directory_listing")
    return flags


# --- the certificate's notAfter, from DER (getpeercert() is empty when unverified) -------


def _der_element(data: bytes, offset: int) -> tuple[int, int, int]:
    """(tag, start of content, end of content) of the DER element at `offset`."""
    tag = data[offset]
    length = data[offset + 1]
    start = offset + 2
    if length & 0x80:
        count = length & 0x7F
        length = int.from_bytes(data[start : start + count], "big")
        start += count
    return tag, start, start + length


def certificate_not_after(der: bytes) -> datetime | None:
    """notAfter of an X.509 certificate in DER form (None if it cannot be read)."""
    try:
        _, cert_start, _ = _der_element(der, 0)  # Certificate
        _, tbs_start, _ = _der_element(der, cert_start)  # TBSCertificate
        position = tbs_start
        tag, _, end = _der_element(der, position)
        if tag == 0xA0:  # explicit version
            position = end
        # serialNumber, signature algorithm, issuer: skip to validity.
        for _ in range(3):
            _, _, position = _der_element(der, position)
        _, validity_start, _ = _der_element(der, position)
        _, _, after_not_before = _der_element(der, validity_start)
        tag, start, end = _der_element(der, after_not_before)
        text = der[start:end].decode("ascii")
        if tag == 0x17:  # UTCTime: YYMMDDHHMMSSZ
            parsed = datetime.strptime(text, "%y%m%d%H%M%SZ")
        elif tag == 0x18:  # GeneralizedTime: YYYYMMDDHHMMSSZ
            parsed = datetime.strptime(text, "%Y%m%d%H%M%SZ")
        else:
            return None
        # Not datetime.UTC (3.11+): the vantage point's python3 may be older than ours.
        return parsed.replace(tzinfo=timezone.utc)  # noqa: UP017
    except (IndexError, ValueError, UnicodeDecodeError):
        return None


# --- fetching ---------------------------------------------------------------------------


class _Fetcher:
    def __init__(self, timeout: float, deadline: float, ca_file: str | None) -> None:
        self.timeout = timeout
        self.deadline = deadline
        self.ca_file = ca_file
        self.lock = threading.Lock()
        # Origins whose certificate failed verification: fetched again without verifying
        # (a server with a bad certificate can still leak), with the error reported.
        self.unverified: dict[tuple[str, int], str] = {}
        # Origins that did not answer a connect in time: later requests in this run do not
        # wait for the same timeout again (a dropped port would stall the round).
        self.silent: set[tuple[str, int]] = set()

    def verified_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=self.ca_file or None)
        return context

    @staticmethod
    def unverified_context() -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context

    def fetch(self, request: dict[str, Any]) -> dict[str, Any]:
        url = str(request.get("url", ""))
        result: dict[str, Any] = {
            "url": url,
            "status": None,
            "headers": {},
            "flags": [],
            "bytes": 0,
            "error": None,
            "error_kind": None,
            "tls": None,
        }
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            result.update(error=f"not an http(s) URL: {url!r}", error_kind="other")
            return result
        secure = parts.scheme == "https"
        port = parts.port or (443 if secure else 80)
        origin = (parts.hostname, port)
        if time.monotonic() > self.deadline:
            result.update(error="skipped: the round's deadline passed", error_kind="timeout")
            return result
        with self.lock:
            silent = origin in self.silent
        if silent:
            result.update(
                error="timeout (no answer to an earlier connect in this round)",
                error_kind="timeout",
            )
            return result
        target = parts.path or "/"
        if parts.query:
            target += "?" + parts.query
        headers = {str(k): str(v) for k, v in dict(request.get("headers") or {}).items()}
        headers.setdefault("User-Agent", USER_AGENT)
        headers["Accept-Encoding"] = "identity"
        headers["Connection"] = "close"
        try:
            self._get(result, parts.hostname, port, secure, target, headers, request)
        except TimeoutError:
            result.update(error="timeout", error_kind="timeout")
            if result["status"] is None:
                with self.lock:
                    self.silent.add(origin)
        except ConnectionRefusedError:
            result.update(error="connection refused", error_kind="refused")
        except ConnectionResetError:
            result.update(error="connection reset", error_kind="reset")
        except socket.gaierror as exc:
            result.update(error=f"name resolution failed: {exc.strerror}", error_kind="dns")
        except ssl.SSLError as exc:
            result.update(error=f"TLS error: {exc.reason or exc}", error_kind="tls")
        except (OSError, http.client.HTTPException) as exc:
            text = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
            kind = "unreachable" if isinstance(exc, OSError) else "other"
            result.update(error=text, error_kind=kind)
        return result

    def _connection(self, host: str, port: int, secure: bool) -> http.client.HTTPConnection:
        if not secure:
            return http.client.HTTPConnection(host, port, timeout=self.timeout)
        with self.lock:
            failed = (host, port) in self.unverified
        context = self.unverified_context() if failed else self.verified_context()
        return http.client.HTTPSConnection(host, port, timeout=self.timeout, context=context)

    def _get(
        self,
        result: dict[str, Any],
        host: str,
        port: int,
        secure: bool,
        target: str,
        headers: dict[str, str],
        request: dict[str, Any],
    ) -> None:
        connection = self._connection(host, port, secure)
        try:
            try:
                connection.connect()
            except ssl.SSLCertVerificationError as exc:
                connection.close()
                with self.lock:
                    self.unverified[(host, port)] = str(exc.verify_message or exc)
                connection = self._connection(host, port, secure)
                connection.connect()
            if secure:
                result["tls"] = self._tls_info(connection, host, port)
            connection.request("GET", target, headers=headers)
            response = connection.getresponse()
            result["status"] = response.status
            for name in REPORTED_HEADERS:
                value = response.getheader(name)
                if value is not None:
                    result["headers"][name] = value[:500]
            body = response.read(MAX_BODY)
            result["bytes"] = len(body)
            result["flags"] = document_flags(body)
            if request.get("want_text") and not result["flags"]:
                result["text"] = body[:MAX_TEXT].decode("utf-8", "replace")
            expect = request.get("expect")
            if isinstance(expect, str) and expect:
                result["expected"] = expect.encode("utf-8") in body
        finally:
            connection.close()

    def _tls_info(
        self, connection: http.client.HTTPConnection, host: str, port: int
    ) -> dict[str, Any]:
        sock = connection.sock
        info: dict[str, Any] = {"not_after": None, "days_left": None, "verify_error": None}
        with self.lock:
            info["verify_error"] = self.unverified.get((host, port))
        if isinstance(sock, ssl.SSLSocket):
            der = sock.getpeercert(binary_form=True)
            not_after = certificate_not_after(der) if der else None
            if not_after is not None:
                info["not_after"] = not_after.isoformat()
                info["days_left"] = round((not_after.timestamp() - time.time()) / 86400, 3)
        return info


def check_port(target: str, timeout: float, deadline: float | None = None) -> str:
    if deadline is not None and time.monotonic() > deadline:
        return "skipped"
    host, _, port_text = target.rpartition(":")
    host = host.strip("[]")
    try:
        with socket.create_connection((host, int(port_text)), timeout=timeout):
            return "open"
    except TimeoutError:
        return "timeout"
    except (OSError, ValueError):
        return "closed"


def run(job: dict[str, Any]) -> dict[str, Any]:
    timeout = float(job.get("timeout") or 5.0)
    connect_timeout = float(job.get("connect_timeout") or timeout)
    deadline = time.monotonic() + float(job.get("deadline") or 60.0)
    fetcher = _Fetcher(timeout, deadline, job.get("ca_file") or None)
    requests = list(job.get("requests") or [])
    targets = [str(t) for t in job.get("connect") or []]
    # At most WORKERS requests at a time; fewer when the job asks (a server that must not
    # see concurrent requests, such as a test server sharing one database connection).
    workers = max(1, min(int(job.get("workers") or WORKERS), WORKERS))
    # Nested, not parenthesised: the vantage point's python3 may predate 3.10's syntax.
    with ThreadPoolExecutor(max_workers=CONNECT_WORKERS) as scan:  # noqa: SIM117
        with ThreadPoolExecutor(max_workers=workers) as pool:
            pending = [scan.submit(check_port, t, connect_timeout, deadline) for t in targets]
            results = list(pool.map(fetcher.fetch, requests))
            states = [future.result() for future in pending]
    return {"results": results, "connect": dict(zip(targets, states, strict=True))}


def main() -> int:
    try:
        job = json.loads(sys.stdin.read())
        if not isinstance(job, dict):
            raise ValueError("the job must be a JSON object")
    except ValueError as exc:
        sys.stderr.write(f"vigie fetch: bad job on stdin: {exc}\n")
        return 2
    json.dump(run(job), sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
