"""Form bodies: ``application/x-www-form-urlencoded`` and ``multipart/form-data``.

Both become a list of ``(name, value)`` pairs that the endpoint folds into its
request model exactly as it folds query parameters (strings converted to the
field types, repeated names only for list fields). A url-encoded body is small
and read whole (``HTTP_MAX_BODY``). A multipart body is fed chunk by chunk to
python-multipart's streaming parser (the one Starlette uses): text fields are
kept as strings, each file goes into an :class:`UploadFile` as it arrives, so
a 20 MiB upload never sits in memory whole. A file part with an empty filename
and no bytes (a browser's "no file chosen") is left out, so an
``UploadFile | None`` field is None.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING
from urllib.parse import unquote_plus

from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, MultipartState, parse_options_header

from ._errors import HttpError
from ._uploads import UploadFile

if TYPE_CHECKING:
    from python_multipart.multipart import MultipartCallbacks

__all__ = (
    "FORM",
    "MULTIPART",
    "FormValue",
    "form_kind",
    "parse_multipart",
    "parse_urlencoded",
)

FORM = "application/x-www-form-urlencoded"
MULTIPART = "multipart/form-data"
MAX_PARTS = 1000
"""Most parts (fields and files) one multipart body may have."""

FormValue = str | UploadFile


def form_kind(content_type: bytes | None) -> str | None:
    """:data:`FORM` or :data:`MULTIPART` when ``content_type`` is one of them, else None."""
    if not content_type:
        return None
    lowered = content_type.lower()
    if b"form" not in lowered:  # JSON and everything else: one C-speed search
        return None
    media = lowered.split(b";", 1)[0].strip()
    if media == b"multipart/form-data":
        return MULTIPART
    if media == b"application/x-www-form-urlencoded":
        return FORM
    return None


def parse_urlencoded(body: bytes) -> list[tuple[str, str]]:
    """``a=1&b=x+y`` -> ``[("a", "1"), ("b", "x y")]``, UTF-8 (blank values kept)."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise _malformed("the url-encoded form is not UTF-8 text") from None
    pairs = []
    for piece in text.split("&"):
        if piece:
            key, _, value = piece.partition("=")
            pairs.append((unquote_plus(key), unquote_plus(value)))
    return pairs


async def parse_multipart(
    chunks: AsyncIterator[bytes],
    content_type: bytes,
    files: list[UploadFile],
    file_fields: frozenset[str] = frozenset(),
) -> list[tuple[str, FormValue]]:
    """The fields and files of a multipart body read from ``chunks``.

    A part with a filename is a file, and so is any part named in ``file_fields`` (a
    filename is optional in a multipart body: RFC 7578). Every :class:`UploadFile` made
    is appended to ``files`` at once, so whoever owns that list closes them all
    whatever happens here (a 413, a malformed body, a disconnect).
    """
    _, options = parse_options_header(content_type)
    boundary = options.get(b"boundary")
    if not boundary:
        raise _malformed("the multipart/form-data body has no boundary in its Content-Type")
    parts = _Parts(files, file_fields)
    try:
        parser = MultipartParser(boundary, parts.callbacks())
        async for chunk in chunks:
            parser.write(chunk)
            await parts.flush()
    except FormParserError as exc:
        raise _malformed(f"the multipart/form-data body is malformed: {exc}") from None
    if parser.state != MultipartState.END:
        raise _malformed("the multipart/form-data body ends before its closing boundary")
    return parts.items


class _Parts:
    """python-multipart's callbacks (plain calls): what they find is written out by
    :meth:`flush`, awaited between chunks, so a file's bytes go to disk off the loop."""

    def __init__(self, files: list[UploadFile], file_fields: frozenset[str]) -> None:
        self.items: list[tuple[str, FormValue]] = []
        self._files = files
        self._file_fields = file_fields
        self._pending: list[tuple[UploadFile, bytes]] = []
        self._finished: list[UploadFile] = []
        self._headers: dict[str, str] = {}
        self._header = bytearray()
        self._value = bytearray()
        self._name = ""
        self._text = bytearray()
        self._file: UploadFile | None = None
        self._received = 0
        self._count = 0

    def callbacks(self) -> MultipartCallbacks:
        return {
            "on_part_begin": self._begin,
            "on_part_data": self._data,
            "on_part_end": self._end,
            "on_header_field": self._header_field,
            "on_header_value": self._header_value,
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
        }

    def _begin(self) -> None:
        self._count += 1
        if self._count > MAX_PARTS:
            raise _malformed(f"the multipart/form-data body has more than {MAX_PARTS} parts")
        self._headers, self._text, self._file, self._received = {}, bytearray(), None, 0

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._header += data[start:end]

    def _header_value(self, data: bytes, start: int, end: int) -> None:
        self._value += data[start:end]

    def _header_end(self) -> None:
        name = self._header.decode("latin-1").lower()
        self._headers[name] = self._value.decode("latin-1")
        self._header, self._value = bytearray(), bytearray()

    def _headers_finished(self) -> None:
        _, options = parse_options_header(self._headers.get("content-disposition", ""))
        if b"name" not in options:
            raise _malformed("a multipart/form-data part has no name in its Content-Disposition")
        self._name = _text(options[b"name"], "a part name")
        if b"filename" in options or self._name in self._file_fields:
            filename = _text(options.get(b"filename", b""), f"the filename of {self._name!r}")
            self._file = UploadFile(
                filename, self._headers.get("content-type"), headers=self._headers
            )
            self._files.append(self._file)

    def _data(self, data: bytes, start: int, end: int) -> None:
        if self._file is None:
            self._text += data[start:end]
        else:
            self._pending.append((self._file, data[start:end]))
            self._received += end - start

    def _end(self) -> None:
        file = self._file
        if file is None:
            self.items.append((self._name, _text(bytes(self._text), f"field {self._name!r}")))
        elif file.filename or self._received:  # else a browser's "no file chosen"
            self.items.append((self._name, file))
            self._finished.append(file)

    async def flush(self) -> None:
        """Write what the last chunk brought to its files; rewind the files it completed."""
        for file, data in self._pending:
            await file.write(data)
        for file in self._finished:
            await file.seek(0)
        self._pending.clear()
        self._finished.clear()


def _text(raw: bytes, what: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise _malformed(f"{what} is not UTF-8 text") from None


def _malformed(message: str) -> HttpError:
    return HttpError(400, "malformed_form", message)
