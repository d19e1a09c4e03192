"""The bus's OpenTelemetry spans, when tracing is on (``microcore.tooling.TRACING``).

A publish is a ``producer`` span and a request a ``client`` span; the event carries the
span's W3C ``traceparent`` (in process, and over NATS in the frame and the message header),
so each delivery to a subscriber is a ``consumer`` span continuing the publisher's trace.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from microcore import Event
from microcore.tooling import TRACING

__all__ = ("attributes", "traced_delivery")


def attributes(name: str, plugin: str) -> dict[str, Any]:
    """A bus span's attributes (OpenTelemetry messaging conventions)."""
    return {
        "messaging.system": "microcore",
        "messaging.destination.name": name,
        "microcore.plugin": plugin,
    }


@contextmanager
def traced_delivery(event: Event, subscriber: str, attempt: int) -> Iterator[None]:
    """The ``consumer`` span of one call of a subscriber's handler."""
    fields = attributes(event.name, subscriber)
    fields["messaging.message.id"] = event.id
    fields["microcore.attempt"] = attempt
    with TRACING.span(
        f"{event.name} process", kind="consumer", attributes=fields, parent=event.traceparent
    ):
        yield
