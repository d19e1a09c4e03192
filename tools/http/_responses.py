"""Responses the tool builds itself: Starlette ``Response`` objects without the set-up cost.

A handler's dict, list or Struct becomes a :class:`JSONReply`: a real
``starlette.responses.Response`` (middleware can read and change it) whose
headers are assembled directly instead of through ``init_headers``.
"""

from __future__ import annotations

from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from ._errors import HttpError, error_json

__all__ = ("JSON", "JSONReply", "error_reply", "internal_error_reply")

JSON = b"application/json"
_CONTENT_TYPE = b"content-type"
_CONTENT_LENGTH = b"content-length"


class JSONReply(Response):
    """An encoded body with a status; ``headers`` are extra raw header pairs."""

    media_type = "application/json"

    def __init__(
        self,
        body: bytes,
        status: int = 200,
        headers: list[tuple[bytes, bytes]] | None = None,
        *,
        content_type: bytes = JSON,
    ) -> None:
        self.status_code = status
        self.body = body
        self.background = None
        if status < 200 or status == 204 or status == 304:
            raw = []
        else:
            raw = [(_CONTENT_TYPE, content_type), (_CONTENT_LENGTH, b"%d" % len(body))]
        if headers:
            raw.extend(headers)
        self.raw_headers = raw

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send(
            {"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers}
        )
        await send({"type": "http.response.body", "body": self.body})


def error_reply(error: HttpError, error_id: str | None = None) -> JSONReply:
    """The error shape with the error's status and headers (e.g. ``Allow`` on a 405)."""
    extra = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in error.headers.items()]
    body = error_json(error.code, error.message, path=error.path, error_id=error_id)
    return JSONReply(body, error.http_status or 500, extra)


def internal_error_reply(error_id: str) -> JSONReply:
    """A 500 that names the error id (also in the log with the traceback) and nothing else."""
    body = error_json(
        "internal_error",
        f"internal server error; the log has the details under error id {error_id}",
        error_id=error_id,
    )
    return JSONReply(body, 500)
