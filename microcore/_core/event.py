"""The event type every bus driver delivers, generic over its payload."""

from __future__ import annotations

from typing import Any, Generic

import msgspec
from typing_extensions import TypeVar

__all__ = ("Event", "P")

P = TypeVar("P", default=Any)  # the default keeps a bare ``Event`` valid under mypy --strict


class Event(msgspec.Struct, Generic[P], frozen=True, kw_only=True):
    """An event, as a subscriber receives it.

    ``Event[OrderPlaced]`` in a handler's annotation declares the payload it
    accepts: the bus converts the payload to ``OrderPlaced`` before the call (in
    process and over NATS alike); a bare ``Event`` gets it as published.
    ``correlation_id`` is shared by everything caused by one request or event;
    ``parent_id`` is the id of the event whose handler published this one;
    ``traceparent`` the W3C trace context of its publish while tracing is on (README
    "Tracing"), so its deliveries continue the publisher's trace, across replicas too.
    """

    name: str
    payload: P
    id: str
    correlation_id: str
    source: str
    timestamp: float
    parent_id: str | None = None
    traceparent: str | None = None
