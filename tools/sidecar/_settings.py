"""The sidecar tool's settings, read once at set-up."""

from __future__ import annotations

import msgspec

from microcore.tooling import ConfigurationError
from tools.config import Config

__all__ = ("SidecarSettings", "read_settings")


class SidecarSettings(msgspec.Struct, frozen=True, kw_only=True):
    ready_timeout: float = 10.0  # start -> "ready"
    stop_timeout: float = 5.0  # stdin closed -> SIGTERM at half -> SIGKILL
    http_timeout: float = 30.0  # a forwarded request's answer (504 after it)
    call_timeout: float = 30.0  # an event delivered, a message written
    backoff: float = 0.5  # first restart delay after a crash, doubled up to max_backoff
    max_backoff: float = 30.0
    stable_after: float = 10.0  # up this long: the next crash restarts after `backoff` again
    max_line: int = 16 * 1024 * 1024  # one protocol message
    nats_url: str | None = None  # EVENT_BUS_URL when it is nats://...: the NATS transport's
    subject_root: str = "microcore"  # EVENT_BUS_STREAM: subjects <root>_sidecar.<identity>...


def read_settings(config: Config) -> SidecarSettings:
    """``SIDECAR_READY_TIMEOUT``, ``SIDECAR_STOP_TIMEOUT``, ``SIDECAR_HTTP_TIMEOUT``,
    ``SIDECAR_CALL_TIMEOUT``, ``SIDECAR_RESTART_BACKOFF``, ``SIDECAR_MAX_BACKOFF``,
    ``SIDECAR_MAX_LINE`` (bytes); the NATS transport uses the bus's ``EVENT_BUS_URL`` (when
    it is ``nats://...``) and ``EVENT_BUS_STREAM`` (its subjects' root)."""
    default = SidecarSettings()
    seconds = {
        "ready_timeout": "SIDECAR_READY_TIMEOUT",
        "stop_timeout": "SIDECAR_STOP_TIMEOUT",
        "http_timeout": "SIDECAR_HTTP_TIMEOUT",
        "call_timeout": "SIDECAR_CALL_TIMEOUT",
        "backoff": "SIDECAR_RESTART_BACKOFF",
        "max_backoff": "SIDECAR_MAX_BACKOFF",
    }
    values: dict[str, float] = {}
    for field, key in seconds.items():
        value = values[field] = config.get_float(key, getattr(default, field))
        if value <= 0:
            raise ConfigurationError(f"{key} must be a positive number of seconds, got {value}")
    max_line = config.get_int("SIDECAR_MAX_LINE", default.max_line)
    if max_line < 1024:
        raise ConfigurationError(f"SIDECAR_MAX_LINE must be at least 1024 bytes, got {max_line}")
    bus_url = config.get("EVENT_BUS_URL") or ""
    nats = bus_url.strip().startswith("nats://")
    return SidecarSettings(
        **values,
        max_line=max_line,
        nats_url=bus_url.strip() if nats else None,
        subject_root=config.get("EVENT_BUS_STREAM") or default.subject_root,
    )
