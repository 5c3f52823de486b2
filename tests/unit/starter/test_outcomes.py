"""Failure control: exceptions to decisions, delay levels from seconds."""

from __future__ import annotations

from datetime import timedelta

import pytest

from rmqkit.errors import ConfigurationError
from rmqkit.starter.outcomes import (
    Action,
    BatchFailed,
    Drop,
    ErrorPolicy,
    GiveUp,
    RetryLater,
    delay_level_for,
)


@pytest.mark.parametrize(
    ("seconds", "level"),
    [(0, 1), (1, 1), (1.5, 2), (5, 2), (30, 4), (61, 6), (7200, 18), (99999, 18)],
)
def test_delay_level_rounds_up_to_the_next_level(seconds: float, level: int) -> None:
    assert delay_level_for(seconds) == level


def test_signals_map_to_actions() -> None:
    p = ErrorPolicy()
    assert p.decide(RetryLater()).action is Action.RETRY
    assert p.decide(RetryLater()).delay_level == 0  # the broker's back-off
    assert p.decide(RetryLater(delay=timedelta(minutes=2))).delay_level == 6
    assert p.decide(GiveUp("no")) .action is Action.DLQ
    assert p.decide(GiveUp("no")).consume_level == -1
    assert p.decide(Drop()).action is Action.DROP and p.decide(Drop()).consume_level is None


def test_exception_table_most_specific_class_wins() -> None:
    class Transient(Exception): ...

    class Timeout(Transient): ...

    p = ErrorPolicy(retry_on=(Transient,), dlq_on=(ValueError,), drop_on=(Timeout,))
    assert p.decide(Timeout()).action is Action.DROP
    assert p.decide(Transient()).action is Action.RETRY
    assert p.decide(ValueError()).action is Action.DLQ
    assert p.decide(KeyError()).action is Action.RETRY  # unmatched: retried


def test_default_level_and_dlq_default() -> None:
    assert ErrorPolicy(delay_level_when_next_consume=3).decide(KeyError()).delay_level == 3
    assert ErrorPolicy(delay_level_when_next_consume=-1).decide(KeyError()).action is Action.DLQ
    with pytest.raises(ConfigurationError, match="delay_level_when_next_consume"):
        ErrorPolicy(delay_level_when_next_consume=19)
    with pytest.raises(ConfigurationError, match="two actions"):
        ErrorPolicy(retry_on=(KeyError,), drop_on=(KeyError,))


def test_batch_failed_accepts_indexes_or_a_mapping() -> None:
    assert set(BatchFailed([1, 3]).failed) == {1, 3}
    assert isinstance(BatchFailed({0: GiveUp()}).failed[0], GiveUp)
