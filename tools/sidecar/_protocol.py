"""The sidecar protocol, version 1: JSON lines over the program's stdin and stdout, or the
same objects as NATS messages (``_nats.py``).

Every message is one JSON object on one line with a ``type``. Messages that expect an
answer carry an ``id`` (a string or an integer, unique among that side's open calls);
the answer is ``{"type": "result", "id": ..., "result": ...}`` or
``{"type": "error", "id": ..., "error": {"code": ..., "message": ..., "status": ...}}``.
The README's "Sidecars" section is the full description; this module is its decoder.
"""

from __future__ import annotations

from typing import Any

import msgspec

__all__ = (
    "PROTOCOL",
    "Hello",
    "Incoming",
    "LogLine",
    "Publish",
    "Ready",
    "Reply",
    "Request",
    "Route",
    "Subscribe",
    "decode",
    "encode",
    "error",
    "result",
)

PROTOCOL = 1
Id = str | int


class _Message(msgspec.Struct, tag_field="type", forbid_unknown_fields=True, kw_only=True):
    pass


class Hello(_Message, tag="hello"):
    """The program starts talking; the kernel answers ``welcome``."""

    id: Id
    protocol: int = PROTOCOL


class Subscribe(_Message, tag="subscribe"):
    """Receive the events matching ``pattern`` (a handler's non-null result answers requests)."""

    id: Id
    pattern: str
    retries: int = 0


class Respond(_Message, tag="respond"):
    """Answer request ``name``: whatever the program replies, null included, is the reply."""

    id: Id
    name: str


class Route(_Message, tag="route"):
    """Serve ``method path`` through the http tool, forwarded as an ``http`` message."""

    id: Id
    method: str
    path: str
    status_code: int = 200
    summary: str | None = None
    tags: list[str] = []
    auth: str | bool | None = None
    timeout: float | None = None
    fields: dict[str, str] = {}  # name -> str, int, float or bool (? when optional)


class Ready(_Message, tag="ready"):
    """Registration is over: swap the registrations in (they serve from now on)."""

    id: Id


class Publish(_Message, tag="publish"):
    id: Id
    name: str
    payload: dict[str, Any]
    cause: Id | None = None  # the id of the kernel's event or http message being handled


class Request(_Message, tag="request"):
    id: Id
    name: str
    payload: dict[str, Any]
    timeout: float = 5.0
    cause: Id | None = None


class ErrorBody(msgspec.Struct, kw_only=True):
    code: str = "error"
    message: str = ""
    status: int | None = None  # an HTTP status (400-599) for an http message


class Reply(_Message, tag="result"):
    id: Id
    result: Any = None


class Failure(_Message, tag="error"):
    id: Id
    error: ErrorBody


class LogLine(_Message, tag="log"):
    message: str
    level: str = "info"
    fields: dict[str, Any] = {}


Incoming = (
    Hello | Subscribe | Respond | Route | Ready | Publish | Request | Reply | Failure | LogLine
)

_decoder: msgspec.json.Decoder[Incoming] = msgspec.json.Decoder(Incoming)
_encoder = msgspec.json.Encoder()


def decode(line: bytes) -> Incoming:
    """One message; ``msgspec.DecodeError`` (a ``ValidationError`` for a bad shape) else."""
    return _decoder.decode(line)


def encode(message: dict[str, Any]) -> bytes:
    """One line (a newline terminates it)."""
    return _encoder.encode(message) + b"\n"


def result(id: Id, value: Any = None) -> dict[str, Any]:
    return {"type": "result", "id": id, "result": value}


def error(id: Id | None, code: str, message: str, status: int | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"code": code, "message": message}
    if status is not None:
        body["status"] = status
    return {"type": "error", "id": id, "error": body}
