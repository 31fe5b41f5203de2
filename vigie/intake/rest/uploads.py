"""Uploads kept in memory only: a received document never touches disk in plaintext.

Django's default handlers spill an upload above FILE_UPLOAD_MAX_MEMORY_SIZE (2.5 MB) into a
temporary file: a patient's PDF, unencrypted, in /tmp (invariant 4 forbids it). The REST
view installs this handler instead, for its own requests only, so no setting changes what
other views do. Memory stays bounded: the view refuses a declared Content-Length above the
limit before parsing, and this handler stops at the limit whatever the body really holds.

(Under WSGI the body is read from the socket as it is parsed; Django's ASGI handler would
first spool the whole body to a temporary file, which is one reason Vigie serves WSGI.)
"""

from __future__ import annotations

import io
from typing import Any

from django.core.files.uploadedfile import InMemoryUploadedFile
from django.core.files.uploadhandler import FileUploadHandler, StopUpload
from django.http import HttpRequest


class MemoryOnlyUploadHandler(FileUploadHandler):
    """Every file part in a BytesIO; all parts together at most `limit` bytes."""

    def __init__(self, request: HttpRequest, limit: int) -> None:
        super().__init__(request)
        self.limit = limit
        self.received = 0
        self.too_large = False
        self.buffer = io.BytesIO()

    def new_file(self, *args: Any, **kwargs: Any) -> None:
        super().new_file(*args, **kwargs)
        self.buffer = io.BytesIO()

    def receive_data_chunk(self, raw_data: bytes, start: int) -> bytes | None:
        self.received += len(raw_data)
        if self.received > self.limit:
            self.too_large = True
            # Drop what was buffered now, not when the request ends. The parser then drains
            # the rest of the body, which the view bounded by its Content-Length check.
            self.buffer = io.BytesIO()
            raise StopUpload(connection_reset=False)
        self.buffer.write(raw_data)
        # None: later handlers (there are none) get nothing to spill anywhere.
        return None

    def file_complete(self, file_size: int) -> InMemoryUploadedFile:
        self.buffer.seek(0)
        return InMemoryUploadedFile(
            file=self.buffer,
            field_name=self.field_name,
            name=self.file_name,
            content_type=self.content_type,
            size=file_size,
            charset=self.charset,
            content_type_extra=self.content_type_extra,
        )
