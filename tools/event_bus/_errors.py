"""Errors the event bus raises besides ``NoResponder`` and ``RequestTimeout`` (in microcore)."""

from __future__ import annotations

from microcore.events import EventNameError
from microcore.tooling import MicroCoreError

__all__ = (
    "BusClosed",
    "DeliveryTimeout",
    "EventNameError",
    "EventPayloadError",
    "PublishTimeout",
    "RequestFailed",
)


class BusClosed(MicroCoreError):
    """The bus is shutting down and takes no new events (handlers may still finish chains)."""

    code = "unavailable"
    http_status = 503


class PublishTimeout(MicroCoreError, TimeoutError):
    """A subscriber's buffer stayed full for longer than ``EVENT_BUS_PUBLISH_TIMEOUT``."""

    code = "bus_full"
    http_status = 503


class RequestFailed(MicroCoreError):
    """Every responder to a ``request`` failed (after its retries) without replying."""

    code = "request_failed"


class EventPayloadError(MicroCoreError, TypeError):
    """A payload is neither a dict nor a msgspec Struct."""

    code = "invalid_event_payload"


class DeliveryTimeout(MicroCoreError, TimeoutError):
    """A handler ran past ``EVENT_BUS_DELIVERY_TIMEOUT`` and was cancelled."""

    code = "timeout"
