"""Schedules: due times every replica computes alike, and clear refusals."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from tools.scheduler import ScheduleError
from tools.scheduler._schedule import Cron, Every


def _at(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


def test_every_due_times_sit_on_the_epoch_grid() -> None:
    """every(s) is due at multiples of s since the epoch, strictly after the moment asked."""
    every = Every(60)
    assert every.next_after(_at("2024-01-01T12:00:30")) == _at("2024-01-01T12:01:00")
    assert every.next_after(_at("2024-01-01T12:01:00")) == _at("2024-01-01T12:02:00")
    tenth = Every(0.1)
    moment = 1_700_000_000.3  # a grid point that floating point rounds either way
    assert moment < tenth.next_after(moment) <= moment + 0.1 + 1e-9
    assert str(Every(0.5)) == "every 0.5s" and str(Every(3600)) == "every 3600s"


def test_every_refuses_what_is_not_a_positive_number() -> None:
    """Zero, negatives, infinities, NaN, booleans and strings are refused, with an example."""
    for bad in (0, -1.5, float("inf"), float("nan"), True, "60", None):
        with pytest.raises(ScheduleError, match=r"e\.g\. every\(60, self\.job\)"):
            Every(bad)


def test_cron_due_times_follow_the_expression_in_utc() -> None:
    """cron gives the next matching minute in UTC, strictly after the moment asked."""
    weekdays = Cron("0 9 * * MON-FRI")
    assert weekdays.next_after(_at("2024-01-05T09:00:00")) == _at("2024-01-08T09:00:00")
    assert weekdays.next_after(_at("2024-01-05T08:59:59.5")) == _at("2024-01-05T09:00:00")
    assert str(Cron(" */5   * * * * ")) == "cron */5 * * * *"


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("61 * * * *", "cron expression '61 * * * *' is not valid: Bad minute"),
        ("* * 30 2 *", "cron expression '* * 30 2 *' is not valid: Bad day-of-month"),
        ("* * * *", "cron expression '* * * *' must have 5 fields"),
        ("0 * * * * *", "cron expression '0 * * * * *' must have 5 fields"),
        (None, "cron expression None must have 5 fields"),
    ],
)
def test_cron_refuses_a_bad_expression_quoting_it(expression: object, message: str) -> None:
    """A malformed expression is refused with the expression and the field it got wrong."""
    with pytest.raises(ScheduleError) as caught:
        Cron(expression)
    assert message in str(caught.value)
