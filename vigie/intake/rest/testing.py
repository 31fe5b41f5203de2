"""Builders for the REST intake tests: real PDFs (pypdf), keys, multipart requests."""

from __future__ import annotations

import io
import json
from typing import Any

from django.test import Client
from pypdf import PdfWriter
from pypdf.actions import JavaScript

from vigie.intake.apikeys import create_key
from vigie.intake.models import ApiKey

URL = "/api/v1/documents"
SCHEMA_URL = "/api/v1/openapi.json"


def pdf(*, javascript: str | None = None, pages: int = 1) -> bytes:
    """A small, valid PDF; with `javascript`, one that runs it when opened."""
    writer = PdfWriter()
    for _ in range(pages):
        writer.add_blank_page(width=595, height=842)
    if javascript is not None:
        # add_js() was removed in pypdf 7; an open action is the same attack.
        writer.add_open_action(JavaScript(javascript))
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def new_key(name: str = "labo-bio", *, networks: list[str] | None = None) -> tuple[ApiKey, str]:
    return create_key(name, source_system="LABO-BIO", networks=networks, by="test")


def metadata(**patient: Any) -> dict[str, Any]:
    return {
        "patient": patient,
        "document": {
            "kind": "lab_result",
            "title": "Numération formule sanguine",
            "clinical_date": "2026-11-02",
            "author": "Dr Biologiste",
        },
    }


def send(
    client: Client,
    key_text: str | None,
    *,
    content: bytes | None = None,
    meta: dict[str, Any] | str | None = None,
    idempotency_key: str | None = None,
    **extra: Any,
) -> Any:
    """POST one document the way a lab's middleware does (multipart, Bearer key)."""
    data: dict[str, Any] = {}
    if content is not None:
        upload = io.BytesIO(content)
        upload.name = "result.pdf"
        data["file"] = upload
    if meta is not None:
        data["metadata"] = meta if isinstance(meta, str) else json.dumps(meta)
    headers = dict(extra)
    if key_text is not None:
        headers["HTTP_AUTHORIZATION"] = f"Bearer {key_text}"
    if idempotency_key is not None:
        headers["HTTP_IDEMPOTENCY_KEY"] = idempotency_key
    return client.post(URL, data, **headers)
