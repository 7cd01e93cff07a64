"""ThrottledLog: a condition met on every request is one line per interval, with the count of the others."""

from __future__ import annotations

import logging

import pytest

from bastion._core.log import MAX_MESSAGES, ThrottledLog

from support.clock import FakeClock

logger = logging.getLogger("bastion.test-throttle")


def lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [record.getMessage() for record in caplog.records if record.name == logger.name]


def test_the_first_is_logged_the_repeats_counted_and_reported_after_the_interval(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = FakeClock(1000.0)
    outages = ThrottledLog(logger, 60, clock=clock)
    with caplog.at_level(logging.WARNING, logger=logger.name):
        assert outages.warning("the store failed: disk full")
        for _ in range(41):
            clock.now += 1
            assert not outages.warning("the store failed: disk full")
        assert outages.warning("the key set cannot be fetched")  # another message: its own line
        clock.now += 19  # 60 s after the first line
        assert outages.warning("the store failed: disk full")
        clock.now += 600  # nothing in between: no count to report
        assert outages.warning("the store failed: disk full")
    assert lines(caplog) == [
        "the store failed: disk full",
        "the key set cannot be fetched",
        "the store failed: disk full (41 more in the last 60 s)",
        "the store failed: disk full",
    ]
    assert all(record.levelno == logging.WARNING and record.exc_info is None for record in caplog.records)
    assert caplog.records[0].filename == "test_throttled_log.py"  # the caller, not the helper


def test_a_message_is_taken_as_is_and_few_are_remembered(caplog: pytest.LogCaptureFixture) -> None:
    outages = ThrottledLog(logger, 60, clock=FakeClock(1000.0))
    with caplog.at_level(logging.WARNING, logger=logger.name):
        outages.warning("100% down")
        for i in range(MAX_MESSAGES + 10):
            outages.warning(f"failure {i}")
        assert outages.warning("100% down")  # forgotten among the newer ones: logged again
    assert lines(caplog)[0] == "100% down"
    assert lines(caplog)[-1] == "100% down"
