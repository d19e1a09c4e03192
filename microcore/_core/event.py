"""The event type every bus driver delivers."""

from __future__ import annotations

from typing import Any

import msgspec

__all__ = ("Event",)


class Event(msgspec.Struct, frozen=True, kw_only=True):
    """One published event, as a subscriber receives it.

    ``correlation_id`` is shared by everything caused by one request or event;
    ``parent_id`` is the id of the event whose handler published this one;
    ``traceparent`` the W3C trace context of its publish while tracing is on (README
    "Tracing"), so its deliveries continue the publisher's trace, across replicas too.
    """

    name: str
    payload: Any
    id: str
    correlation_id: str
    source: str
    timestamp: float
    parent_id: str | None = None
    traceparent: str | None = None
