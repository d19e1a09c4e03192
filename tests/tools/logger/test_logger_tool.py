"""The logger tool: one structured line per call, bound to the plugin, never raising."""

from __future__ import annotations

import structlog.testing

from microcore.tooling import Owner
from tools.logger.logger_tool import LoggerTool


def test_lines_carry_the_plugin_and_the_fields():
    """Every line names the plugin; fields and bound fields come along."""
    log = LoggerTool().bind(Owner("shop.LedgerPlugin"))
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


def test_a_field_named_event_is_logged_as_event_name():
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
