"""structlog configuration: the one place that touches logging's global state."""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog

from .tracing import add_trace_ids

__all__ = ("configure_logging", "reset")

_configured: dict[str, Any] = {}


def configure_logging(*, fmt: str | None = None, level: str = "INFO") -> None:
    """Configure structlog once per process: console lines in a terminal, JSON lines otherwise.

    ``fmt`` is ``"console"`` or ``"json"`` (``LOG_FORMAT``); ``None`` picks by ``isatty``.
    """
    if fmt is None:
        fmt = "console" if sys.stderr.isatty() else "json"
    if fmt not in ("console", "json"):
        from .errors import ConfigurationError

        raise ConfigurationError(f"LOG_FORMAT must be 'console' or 'json', got {fmt!r}")
    wanted = {"fmt": fmt, "level": level.upper()}
    if _configured == wanted:
        return
    renderer: Any = (
        structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
        if fmt == "console"
        else structlog.processors.JSONRenderer()
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            add_trace_ids,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info if fmt == "json" else _identity,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping().get(level.upper(), logging.INFO)
        ),
        logger_factory=structlog.WriteLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
    _configured.clear()
    _configured.update(wanted)


def _identity(logger: Any, name: str, event: Any) -> Any:
    return event


def reset() -> None:
    """Forget the configuration (tests)."""
    _configured.clear()
    structlog.reset_defaults()
