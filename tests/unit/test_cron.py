"""Schedule arithmetic."""

from __future__ import annotations

import datetime as dt

from shipper.core import cron

START = dt.datetime(2026, 11, 25, 16, 7, tzinfo=dt.timezone.utc)


def test_next_slot_is_strictly_after() -> None:
    assert cron.next_slot("*/15 * * * *", START) == START.replace(minute=15)
    assert cron.next_slot("*/15 * * * *", START.replace(minute=15)) == START.replace(minute=30)


def test_missed_slots_are_counted_with_the_latest() -> None:
    count, latest = cron.slots_between("*/15 * * * *", START, START + dt.timedelta(hours=1))
    assert (count, latest) == (4, START.replace(hour=17, minute=0))
    assert cron.slots_between("*/15 * * * *", START, START) == (0, None)


def test_interval_is_the_longest_gap() -> None:
    assert cron.interval("*/15 * * * *", START) == 900
    # Weekdays only at 09:00: the weekend gap counts.
    assert cron.interval("0 9 * * 1-5", START) == 3 * 86400


def test_max_age_is_three_intervals_unless_configured(make_config) -> None:
    assert cron.max_age(make_config()) == 3 * 900
    assert cron.max_age(make_config("notify:\n  max_age: 600\n")) == 600


def test_expressions_and_durations() -> None:
    assert cron.valid_expression("*/5 * * * *")
    assert not cron.valid_expression("every minute")
    assert not cron.valid_expression("* * *")
    assert [cron.describe_duration(s) for s in (5, 65, 3700, 3 * 86400 + 7200)] == [
        "5s",
        "1m 05s",
        "1h 01m",
        "3d 2h",
    ]
