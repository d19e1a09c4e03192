"""What the NATS backend puts on the wire: subjects, consumer names and msgpack frames.

Subjects, for ``EVENT_BUS_STREAM=microcore`` (the stream name roots every subject,
so two apps, or two tests, on one NATS server never see each other's events):

* ``microcore.<name>``          events, stored by the JetStream stream ``microcore``
                                (its subjects are ``microcore.>``)
* ``microcore_req.<name>``      requests (core NATS, not stored)
* ``microcore_deliver.<durable>``  where JetStream pushes a plugin's events

Event names and patterns map to subjects token for token: ``*`` and ``>`` are
NATS's own wildcards with the same meaning, and names were already checked by
the bus (no empty tokens, no whitespace, wildcards only as whole pattern
tokens).

Frames are msgpack (msgspec): smaller and faster than JSON, and they keep
ints, floats, bytes and datetimes apart. An event travels as the
:class:`~microcore.Event` struct itself; its payload arrives as builtins (a
msgspec Struct payload arrives as the equivalent dict), and the bus converts it
into the type a handler declares (``event: Event[Model]``, see ``_contracts.py``)
before the call, as it does in process. Encoders and decoders are built once.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

import msgspec

from microcore import Event

from .._errors import EventPayloadError

__all__ = (
    "CLAIM",
    "FAILED",
    "GONE",
    "NONE",
    "VALUE",
    "ReplyFrame",
    "RequestFrame",
    "Subjects",
    "decode_event",
    "decode_reply",
    "decode_request",
    "encode_event",
    "encode_outcome",
    "encode_reply",
    "encode_request",
)

# What a responder sends back to a requester's inbox, in order: CLAIM when the request
# reached one of its subscriptions, then one outcome (VALUE, NONE or FAILED). GONE says
# the request reached a process whose subscription had just gone away (the requester
# sends it again, for a live replica).
CLAIM, VALUE, NONE, FAILED, GONE = range(5)

_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


class RequestFrame(msgspec.Struct, array_like=True):
    event: Event
    timeout: float  # how long the requester waits: responders stop replying after it


class ReplyFrame(msgspec.Struct, array_like=True):
    kind: int
    responder: str
    value: Any = None
    error: str | None = None


class Subjects:
    """Subject and consumer names for one stream (``EVENT_BUS_STREAM``)."""

    __slots__ = ("events", "stream")

    def __init__(self, stream: str) -> None:
        self.stream = stream
        self.events = f"{stream}.>"  # what the stream stores

    def event(self, name: str) -> str:
        return f"{self.stream}.{name}"

    def request(self, name: str) -> str:
        return f"{self.stream}_req.{name}"

    def durable(self, group: str, pattern: str) -> str:
        """The durable consumer of one plugin's subscription to ``pattern``.

        Readable (the plugin identity, made safe) and unique (a digest of
        identity and pattern), and the same in every replica, so replicas
        share it: JetStream hands each event to one of them.
        """
        digest = hashlib.blake2b(f"{group}\0{pattern}".encode(), digest_size=5).hexdigest()
        return f"{_UNSAFE.sub('_', group)[:80]}_{digest}"

    def deliver(self, durable: str) -> str:
        return f"{self.stream}_deliver.{durable}"


_encoder = msgspec.msgpack.Encoder()
_event_decoder = msgspec.msgpack.Decoder(Event)
_request_decoder = msgspec.msgpack.Decoder(RequestFrame)
_reply_decoder = msgspec.msgpack.Decoder(ReplyFrame)


def encode_event(event: Event) -> bytes:
    """The event as msgpack; a payload msgpack cannot carry is an :class:`EventPayloadError`."""
    try:
        return _encoder.encode(event)
    except (TypeError, ValueError, OverflowError) as exc:  # msgspec.EncodeError is a ValueError
        raise EventPayloadError(
            f"payload of {event.name!r} cannot be sent over NATS: {exc}; use JSON-like values "
            "(dict, list, str, int, float, bool, None), bytes, datetimes or msgspec Structs"
        ) from exc


def decode_event(data: bytes) -> Event:
    return _event_decoder.decode(data)


def encode_request(event: Event, timeout: float) -> bytes:
    try:
        return _encoder.encode(RequestFrame(event, timeout))
    except (TypeError, ValueError, OverflowError) as exc:
        raise EventPayloadError(
            f"payload of request {event.name!r} cannot be sent over NATS: {exc}"
        ) from exc


def decode_request(data: bytes) -> RequestFrame:
    return _request_decoder.decode(data)


def encode_reply(kind: int, responder: str, value: Any = None, error: str | None = None) -> bytes:
    """A reply frame; a return value msgpack cannot carry becomes a FAILED frame saying so."""
    return encode_outcome(kind, responder, value, error)[1]


def encode_outcome(
    kind: int, responder: str, value: Any = None, error: str | None = None
) -> tuple[int, bytes]:
    """:func:`encode_reply` with the kind the frame has (FAILED when ``value`` cannot go)."""
    try:
        return kind, _encoder.encode(ReplyFrame(kind, responder, value, error))
    except (TypeError, ValueError, OverflowError) as exc:
        reason = f"reply of {responder!r} cannot be sent over NATS: {exc}"
        return FAILED, _encoder.encode(ReplyFrame(FAILED, responder, None, reason))


def decode_reply(data: bytes) -> ReplyFrame:
    return _reply_decoder.decode(data)
