"""The bus's settings, read once at setup and validated with messages that name the key."""

from __future__ import annotations

import re

import msgspec

from microcore.tooling import ConfigurationError
from tools.config import Config

__all__ = ("BusSettings", "read_settings")


class BusSettings(msgspec.Struct, frozen=True, kw_only=True):
    url: str = "memory://"  # EVENT_BUS_URL: memory:// (one process) or nats://host:4222
    buffer: int = 1024  # EVENT_BUS_BUFFER: events queued per subscription before publish waits
    publish_timeout: float = 30.0  # EVENT_BUS_PUBLISH_TIMEOUT: longest wait for a full buffer
    delivery_timeout: float = 30.0  # EVENT_BUS_DELIVERY_TIMEOUT: longest handler call
    retry_backoff: float = 0.1  # EVENT_BUS_RETRY_BACKOFF: first retry delay, doubled each time
    drain_timeout: float = 5.0  # EVENT_BUS_DRAIN_TIMEOUT: shutdown drain / unload grace period
    history: int = 1000  # EVENT_BUS_HISTORY: recent events kept for /system/events
    validate: bool = False  # EVENT_BUS_VALIDATE (default: MICROCORE_ENV=development): check
    # each payload against its Struct's constraints and the handlers' declared types at publish
    # NATS only (see nats/backend.py):
    stream: str = "microcore"  # EVENT_BUS_STREAM: JetStream stream name and subject root
    ack_wait: float = 30.0  # EVENT_BUS_ACK_WAIT: redelivery delay of a dead replica's events
    retention: float = 7 * 86400.0  # EVENT_BUS_RETENTION: longest an event waits for a plugin


_STREAM_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")


def read_settings(config: Config) -> BusSettings:
    """Read ``EVENT_BUS_*`` settings; out-of-range values are a :class:`ConfigurationError`."""
    default = BusSettings()
    settings = BusSettings(
        url=config.get("EVENT_BUS_URL") or default.url,
        buffer=config.get_int("EVENT_BUS_BUFFER", default.buffer),
        publish_timeout=config.get_float("EVENT_BUS_PUBLISH_TIMEOUT", default.publish_timeout),
        delivery_timeout=config.get_float("EVENT_BUS_DELIVERY_TIMEOUT", default.delivery_timeout),
        retry_backoff=config.get_float("EVENT_BUS_RETRY_BACKOFF", default.retry_backoff),
        drain_timeout=config.get_float("EVENT_BUS_DRAIN_TIMEOUT", default.drain_timeout),
        history=config.get_int("EVENT_BUS_HISTORY", default.history),
        validate=config.get_bool("EVENT_BUS_VALIDATE", config.development),
        stream=config.get("EVENT_BUS_STREAM") or default.stream,
        ack_wait=config.get_float("EVENT_BUS_ACK_WAIT", default.ack_wait),
        retention=config.get_float("EVENT_BUS_RETENTION", default.retention),
    )
    for key, value in (
        ("EVENT_BUS_BUFFER", settings.buffer),
        ("EVENT_BUS_PUBLISH_TIMEOUT", settings.publish_timeout),
        ("EVENT_BUS_DELIVERY_TIMEOUT", settings.delivery_timeout),
        ("EVENT_BUS_DRAIN_TIMEOUT", settings.drain_timeout),
        ("EVENT_BUS_ACK_WAIT", settings.ack_wait),
        ("EVENT_BUS_RETENTION", settings.retention),
    ):
        if value <= 0:
            raise ConfigurationError(f"{key} must be greater than 0, got {value}")
    for key, value in (
        ("EVENT_BUS_RETRY_BACKOFF", settings.retry_backoff),
        ("EVENT_BUS_HISTORY", settings.history),
    ):
        if value < 0:
            raise ConfigurationError(f"{key} cannot be negative, got {value}")
    if not _STREAM_NAME.fullmatch(settings.stream):
        raise ConfigurationError(
            f"EVENT_BUS_STREAM={settings.stream!r} is not a valid JetStream stream name; use "
            "1-64 letters, digits, '_' or '-' (it also roots the subjects, e.g. 'microcore')"
        )
    return settings
