"""What a listener's handler can say about a message besides "done": retry it later, give up on
it (dead-letter queue now), or drop it; and the per-listener table that maps exception types to
one of those.

RocketMQ's own listener contract has only CONSUME_SUCCESS and RECONSUME_LATER (with a delay
level for the whole batch). These exceptions are turned into per-message delay levels
(`ConsumeContext.failed`), so one message of a batch can be dead-lettered while another is retried.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from enum import Enum

from rmqkit.errors import ConfigurationError

# RocketMQ's default messageDelayLevel: "1s 5s 10s 30s 1m 2m 3m 4m 5m 6m 7m 8m 9m 10m 20m 30m 1h 2h"
DEFAULT_DELAY_LEVELS_S: tuple[float, ...] = (
    1, 5, 10, 30, 60, 120, 180, 240, 300, 360, 420, 480, 540, 600, 1200, 1800, 3600, 7200,
)  # fmt: skip

DLQ_LEVEL = -1
"""The delay level that sends a message straight to the group's dead-letter queue."""


class Action(Enum):
    """What happens to a message after its handler ran."""

    ACK = "ack"  # done: commit the offset
    RETRY = "retry"  # redeliver later (through the group's retry topic)
    DLQ = "dlq"  # to `%DLQ%<group>` now
    DROP = "drop"  # give up silently: commit the offset, no DLQ


class RetryLater(Exception):
    """Raise from a handler to have the message redelivered later.

    Args:
        delay: at least this long (seconds or a timedelta) before the redelivery; rounded up to
            the next RocketMQ delay level. None: the broker's back-off (longer each attempt).
        reason: said in the log.
    """

    def __init__(self, delay: float | timedelta | None = None, reason: str = "") -> None:
        super().__init__(reason or "retry later")
        self.delay_s = delay.total_seconds() if isinstance(delay, timedelta) else delay
        self.reason = reason


class GiveUp(Exception):
    """Raise from a handler to send the message to the dead-letter queue now, without retries."""

    def __init__(self, reason: str = "") -> None:
        super().__init__(reason or "gave up")
        self.reason = reason


class Drop(Exception):
    """Raise from a handler to drop the message: acknowledged, not retried, not dead-lettered."""

    def __init__(self, reason: str = "") -> None:
        super().__init__(reason or "dropped")
        self.reason = reason


class BatchFailed(Exception):
    """Raise from a batch handler (one taking `list[T]`) to say which messages failed; the
    others count as done and are not redelivered.

    Args:
        failed: indexes into the batch, each mapped to what to do with it (an exception such as
            `RetryLater(...)`/`GiveUp()`/`Drop()`, or any other exception, which the listener's
            error table classifies). A plain iterable of indexes retries each one.
    """

    def __init__(self, failed: Mapping[int, BaseException] | Iterable[int]) -> None:
        if isinstance(failed, Mapping):
            self.failed: dict[int, BaseException] = dict(failed)
        else:
            self.failed = {i: RetryLater() for i in failed}
        super().__init__(f"{len(self.failed)} message(s) of the batch failed")


def delay_level_for(delay_s: float, levels_s: tuple[float, ...] = DEFAULT_DELAY_LEVELS_S) -> int:
    """The smallest delay level (1-based) whose delay is at least `delay_s`; the last one when
    the delay is longer than every level."""
    if delay_s <= 0:
        return 1
    i = bisect.bisect_left(levels_s, delay_s)
    return min(i, len(levels_s) - 1) + 1


@dataclass(frozen=True, slots=True)
class Decision:
    """The outcome for one message: an action and, for RETRY, the delay level (0: broker's)."""

    action: Action
    delay_level: int = 0
    reason: str = ""
    dead_lettered: bool = False  # DLQ: the starter already wrote it to the DLQ itself

    @property
    def consume_level(self) -> int | None:
        """The delay level to report to the consumer for a failed message, None when it is done."""
        if self.action is Action.RETRY:
            return self.delay_level
        if self.action is Action.DLQ and not self.dead_lettered:
            return DLQ_LEVEL
        return None


ACK = Decision(Action.ACK)


@dataclass(frozen=True, slots=True)
class ErrorPolicy:
    """How a listener treats exceptions other than RetryLater / GiveUp / Drop.

    The most specific matching class wins (by method resolution order); anything unmatched is
    retried with `delay_level_when_next_consume` (0: the broker's back-off, -1: DLQ at once).
    """

    retry_on: tuple[type[BaseException], ...] = ()
    dlq_on: tuple[type[BaseException], ...] = ()
    drop_on: tuple[type[BaseException], ...] = ()
    delay_level_when_next_consume: int = 0
    _table: dict[type[BaseException], Action] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        if not -1 <= self.delay_level_when_next_consume <= len(DEFAULT_DELAY_LEVELS_S):
            raise ConfigurationError(
                "delay_level_when_next_consume must be -1 (DLQ), 0 (broker back-off) or a delay"
                f" level 1..{len(DEFAULT_DELAY_LEVELS_S)}, not {self.delay_level_when_next_consume}"
            )
        for action, types in (
            (Action.RETRY, self.retry_on), (Action.DLQ, self.dlq_on), (Action.DROP, self.drop_on)
        ):  # fmt: skip
            for t in types:
                if t in self._table:
                    raise ConfigurationError(f"{t.__name__} is mapped to two actions")
                self._table[t] = action

    def decide(self, exc: BaseException) -> Decision:
        """The decision for an exception a handler raised."""
        if isinstance(exc, RetryLater):
            level = 0 if exc.delay_s is None else delay_level_for(exc.delay_s)
            return Decision(Action.RETRY, level, exc.reason)
        if isinstance(exc, GiveUp):
            return Decision(Action.DLQ, reason=exc.reason)
        if isinstance(exc, Drop):
            return Decision(Action.DROP, reason=exc.reason)
        for klass in type(exc).__mro__:
            action = self._table.get(klass)
            if action is not None:
                return Decision(action, self._default_level(action), repr(exc))
        if self.delay_level_when_next_consume < 0:
            return Decision(Action.DLQ, reason=repr(exc))
        return Decision(Action.RETRY, self.delay_level_when_next_consume, repr(exc))

    def _default_level(self, action: Action) -> int:
        return max(0, self.delay_level_when_next_consume) if action is Action.RETRY else 0
