"""Reading a request body from ASGI ``receive``, bounded while it streams in.

The limit is checked against ``Content-Length`` before anything is read, and
against the running total as chunks arrive (a chunked or lying client is cut
off at the first chunk past it). ``read_body`` keeps the whole body (JSON,
url-encoded forms, ``context.body()``); ``body_chunks`` hands it on chunk by
chunk (multipart uploads, which never sit in memory whole).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import NamedTuple

from starlette.types import Receive

from ._errors import HttpError

__all__ = ("BodyLimit", "Disconnected", "body_chunks", "read_body")


class Disconnected(Exception):
    """The client went away while we read its body: nobody is left to answer."""


class BodyLimit(NamedTuple):
    """How many bytes a body may have, and the setting that says so (named in the 413)."""

    size: int
    setting: str = "HTTP_MAX_BODY"

    def exceeded(self) -> HttpError:
        return HttpError(
            413,
            "payload_too_large",
            f"the request body is over the limit of {self.size} bytes ({self.setting})",
        )


async def read_body(receive: Receive, length: int, limit: BodyLimit) -> bytes:
    """The whole body (``length``: Content-Length, -2 chunked), refused (413) as soon as it is
    known to be over ``limit``."""
    if length > limit.size:
        raise limit.exceeded()
    message = await receive()
    if message["type"] == "http.disconnect":
        raise Disconnected
    body: bytes = message.get("body", b"")
    if not message.get("more_body", False):
        if len(body) > limit.size:
            raise limit.exceeded()
        return body
    chunks = [body]
    async for chunk in _rest(receive, len(body), limit):
        chunks.append(chunk)
    return b"".join(chunks)


async def body_chunks(receive: Receive, length: int, limit: BodyLimit) -> AsyncIterator[bytes]:
    """The body chunk by chunk, with the same checks as :func:`read_body`."""
    if length > limit.size:
        raise limit.exceeded()
    async for chunk in _rest(receive, 0, limit):
        yield chunk


async def _rest(receive: Receive, size: int, limit: BodyLimit) -> AsyncIterator[bytes]:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise Disconnected
        chunk: bytes = message.get("body", b"")
        size += len(chunk)
        if size > limit.size:
            raise limit.exceeded()
        if chunk:
            yield chunk
        if not message.get("more_body", False):
            return
