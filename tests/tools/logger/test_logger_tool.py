"""The logger tool: one structured line per call, bound to the plugin, never raising."""

from __future__ import annotations

import structlog.testing

import tools.logger
from microcore.tooling import Owner
from tools.logger import Logger
from tools.logger.logger_tool import LoggerTool


def test_logger_facade_exports_logger() -> None:
    """``from tools.logger import Logger`` is the whole public surface, listed in ``__all__``."""
    assert tools.logger.__all__ == ("Logger",)
    assert all(hasattr(tools.logger, name) for name in tools.logger.__all__)


def test_logger_lines_carry_the_plugin_and_the_fields() -> None:
    """Every line names the plugin; fields and bound fields come along."""
    log: Logger = LoggerTool().bind(Owner("shop.LedgerPlugin"))
    with structlog.testing.capture_logs() as lines:
        log.info("booked", order_id=7)
        log.bind(batch="b1").warning("late", minutes=3)
    assert lines == [
        {"event": "booked", "order_id": 7, "plugin": "shop.LedgerPlugin", "log_level": "info"},
        {
            "event": "late",
            "batch": "b1",
            "minutes": 3,
            "plugin": "shop.LedgerPlugin",
            "log_level": "warning",
        },
    ]


def test_logger_field_named_event_is_logged_as_event_name() -> None:
    """``event=event.name`` (natural in an event handler) does not collide with the message:
    it is logged as ``event_name``, on every level and in bind()."""
    log = LoggerTool().bind(Owner("shop.LedgerPlugin"))
    with structlog.testing.capture_logs() as lines:
        log.info("handled", event="order.placed")
        log.debug("seen", event="a")
        log.error("failed", event="b")
        log.bind(event="c").warning("bound")
        try:
            raise ValueError("x")
        except ValueError:
            log.exception("crashed", event="d")
    assert [(line["event"], line["event_name"]) for line in lines] == [
        ("handled", "order.placed"),
        ("seen", "a"),
        ("failed", "b"),
        ("bound", "c"),
        ("crashed", "d"),
    ]


def test_logger_for_tool_lines_carry_the_tool() -> None:
    """A logger handed to another tool names that tool on every line."""
    log = LoggerTool().for_tool("http")
    with structlog.testing.capture_logs() as lines:
        log.info("listening", port=8000)
    assert lines == [{"event": "listening", "port": 8000, "tool": "http", "log_level": "info"}]
