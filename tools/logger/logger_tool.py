"""The ``logger`` tool: structlog, bound to the plugin that receives it."""

from __future__ import annotations

from typing import Any

import structlog
from structlog.typing import FilteringBoundLogger

from microcore import Tool
from microcore.tooling import Owner

__all__ = ("Logger", "LoggerTool")


class Logger:
    """Structured logging for one plugin. Plain calls; every line carries ``plugin=<identity>``.

    What a plugin receives when it names ``logger`` in its constructor::

        from tools.logger import Logger

        class CreateProductPlugin(Plugin):
            def __init__(self, logger: Logger):
                self.logger = logger

            async def execute(self, data: NewProduct, context: Context) -> Product:
                ...
                self.logger.info("product created", id=product.id)

    A field named ``event`` (where structlog keeps the message) is logged as ``event_name``.
    """

    __slots__ = ("_log",)

    def __init__(self, log: FilteringBoundLogger) -> None:
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
        """``error`` with the current exception's traceback (call inside ``except``)."""
        self._log.exception(msg, **_safe(fields))

    def bind(self, **fields: Any) -> Logger:
        """A logger that adds ``fields`` to every line: ``self.logger.bind(order_id=7)``."""
        return Logger(self._log.bind(**_safe(fields)))


def _safe(fields: dict[str, Any]) -> dict[str, Any]:
    """``fields`` without the key structlog uses for the message (logging never raises)."""
    if "event" in fields:
        fields["event_name"] = fields.pop("event")
    return fields


class LoggerTool(Tool):
    """structlog configured once by the kernel (``LOG_FORMAT``: console or json)."""

    name = "logger"

    def bind(self, owner: Owner) -> Logger:
        """A :class:`Logger` whose every line carries ``plugin=<owner identity>``."""
        log: FilteringBoundLogger = structlog.get_logger("plugin")
        return Logger(log.bind(plugin=owner.identity))

    def for_tool(self, name: str) -> Logger:
        """A logger for another tool: every line carries ``tool=<name>``.

        Tools should log through a module-level ``structlog.get_logger("microcore.<tool>")``
        instead; this stays until every tool has moved.
        """
        log: FilteringBoundLogger = structlog.get_logger("tool")
        return Logger(log.bind(tool=name))
