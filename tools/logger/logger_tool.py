"""The ``logger`` tool: structlog, bound to the plugin that receives it."""

from __future__ import annotations

from typing import Any

import structlog

from microcore import Tool
from microcore.tooling import Owner


class PluginLogger:
    """Structured logging for one plugin. Plain calls; every line carries ``plugin=<identity>``.

    >>> self.logger.info("product created", id=42)

    A field named ``event`` (where structlog keeps the message) is logged as ``event_name``.
    """

    __slots__ = ("_log",)

    def __init__(self, log: Any) -> None:
        self._log = log

    def debug(self, msg: str, **fields: Any) -> None:
        """Log at debug level."""
        self._log.debug(msg, **_safe(fields))

    def info(self, msg: str, **fields: Any) -> None:
        """Log at info level."""
        self._log.info(msg, **_safe(fields))

    def warning(self, msg: str, **fields: Any) -> None:
        """Log at warning level."""
        self._log.warning(msg, **_safe(fields))

    def error(self, msg: str, **fields: Any) -> None:
        """Log at error level."""
        self._log.error(msg, **_safe(fields))

    def exception(self, msg: str, **fields: Any) -> None:
        """Log at error level with the current exception's traceback (call inside ``except``)."""
        self._log.exception(msg, **_safe(fields))

    def bind(self, **fields: Any) -> PluginLogger:
        """A logger that adds ``fields`` to every line."""
        return PluginLogger(self._log.bind(**_safe(fields)))


def _safe(fields: dict[str, Any]) -> dict[str, Any]:
    """``fields`` without the key structlog uses for the message (logging never raises)."""
    if "event" in fields:
        fields["event_name"] = fields.pop("event")
    return fields


class LoggerTool(Tool):
    """structlog configured once by the kernel (``LOG_FORMAT``: console or json)."""

    name = "logger"

    def bind(self, owner: Owner) -> PluginLogger:
        return PluginLogger(structlog.get_logger("plugin").bind(plugin=owner.identity))

    def for_tool(self, name: str) -> PluginLogger:
        """A logger for another tool: every line carries ``tool=<name>``."""
        return PluginLogger(structlog.get_logger("tool").bind(tool=name))
