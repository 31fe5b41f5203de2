"""REST uploads committed in shared rounds, through a real `vigie serve` (real HTTP, real
processes): concurrent uploads from several connections each get their own answer, and
every 202 names a document that is stored, readable and audited — none lost, none swapped;
a refused upload in the middle of the burst is refused alone (intake/rest/rounds.py)."""

from __future__ import annotations

import http.client
import io
import json
import secrets
import threading
from urllib.parse import urlsplit

import pytest
from pypdf import PdfWriter

from tests.browser.live import Live, live_fixture  # noqa: F401 - live_fixture is the shared fixture

pytestmark = pytest.mark.slow

CONNECTIONS = 6
UPLOADS = 8  # per connection
_MARK = "@@VIGIE-ROUNDS@@"


def _pdf() -> bytes:
    writer = PdfWriter()
    writer.add_blank_page(width=595, height=842)
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def _multipart(title: str, ipp: str, content: bytes) -> tuple[str, bytes]:
    boundary = f"rounds-{secrets.token_hex(8)}"
    meta = {
        "patient": {"ipp": ipp},
        "document": {
            "kind": "lab_result",
            "title": title,
            "clinical_date": "2026-11-29",
            "content_type": "application/pdf",
        },
    }
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="metadata"\r\n'
            f"Content-Type: application/json\r\n\r\n{json.dumps(meta)}\r\n"
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.pdf"\r\n'
            "Content-Type: application/pdf\r\n\r\n"
        ).encode()
        + content
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return boundary, body


def test_concurrent_uploads_each_get_their_own_stored_audited_document(live: Live) -> None:
    installation = live.installation
    name = f"rounds-{secrets.token_hex(4)}"
    key = installation.shell_json(
        "import json\nfrom vigie.intake.apikeys import create_key\n"
        f"key, text = create_key({name!r}, source_system='LAB-ROUNDS')\n"
        f"print({_MARK!r} + json.dumps(text))",
        _MARK,
    )
    ipp = installation.facts["patients"][0]["ipp"]
    document = _pdf()
    url = urlsplit(live.base_url)
    answers: dict[str, tuple[int, dict[str, object]]] = {}
    lock = threading.Lock()

    def client(index: int) -> None:
        conn = http.client.HTTPConnection(url.hostname or "", url.port, timeout=60)
        for upload in range(UPLOADS):
            title = f"{name} {index}-{upload}"
            # One upload in the burst is an HTML page named .pdf: refused, and alone.
            content = b"<html>error</html>" if (index, upload) == (0, 3) else document
            boundary, body = _multipart(title, ipp, content)
            conn.request(
                "POST",
                "/api/v1/documents",
                body=body,
                headers={
                    "Authorization": f"Bearer {key}",
                    "Content-Type": f"multipart/form-data; boundary={boundary}",
                },
            )
            response = conn.getresponse()
            answer = json.loads(response.read() or b"{}")
            with lock:
                answers[title] = (response.status, answer)
        conn.close()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(CONNECTIONS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert len(answers) == CONNECTIONS * UPLOADS
    refused = {t for t, (status, _) in answers.items() if status != 202}
    assert refused == {f"{name} 0-3"}
    assert answers[f"{name} 0-3"][0] == 422
    # Every 202 names the document stored under that very title, with its arrival event.
    stored = installation.shell_json(
        "import json\nfrom vigie import vault\nfrom vigie.audit.models import AuditEvent\n"
        "from vigie.records.models import Document\n"
        f"rows = Document.objects.filter(title__startswith={name + ' '!r})\n"
        "events = set(AuditEvent.objects.filter(action='intake.received')"
        ".values_list('document_id', flat=True))\n"
        "print(" + repr(_MARK) + " + json.dumps({d.id: [d.title, d.id in events,"
        " len(b''.join(vault.open(d.id, d.kek_id, bytes(d.wrapped_key))))] for d in rows}))",
        _MARK,
    )
    expected = {
        str(answer["id"]): [title, True, len(document)]
        for title, (status, answer) in answers.items()
        if status == 202
    }
    assert stored == expected
