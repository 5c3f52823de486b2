"""`FakeClock`: the time of an in-memory RocketMQ. Delay levels, retry back-off, orderly suspension,
transaction check-backs and request deadlines all read it, so a test moves time instead of
sleeping (`await broker.advance(30)`)."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime

Listener = Callable[[], None]


class FakeClock:
    """Wall-clock time that only moves when told to.

    Calling the clock returns epoch seconds, so it can stand in for `time.time` wherever a
    clock is injected (for example `MemoryIdempotencyStore(clock=clock)`).

    Args:
        start: epoch seconds to start at (default: the real time now, whole milliseconds).
    """

    def __init__(self, start: float | None = None) -> None:
        self._now_ms = round((time.time() if start is None else start) * 1000)
        self._listeners: list[Listener] = []

    def __call__(self) -> float:
        return self._now_ms / 1000

    def __repr__(self) -> str:
        return f"FakeClock({self.now().isoformat()})"

    def time(self) -> float:
        """Epoch seconds."""
        return self._now_ms / 1000

    def now_ms(self) -> int:
        """Epoch milliseconds, as RocketMQ stamps messages."""
        return self._now_ms

    def now(self) -> datetime:
        """The time as an aware datetime (UTC), handy for `send_delayed(at=...)`."""
        return datetime.fromtimestamp(self._now_ms / 1000, UTC)

    def advance(self, seconds: float) -> None:
        """Move the clock forward by `seconds`.

        This only moves time: what becomes due is delivered by the broker's background delivery
        (when consumers run) or by `await broker.drain()`. `await broker.advance(seconds)` also
        stops at every event on the way (a retry falling due, a transaction check), so prefer it.

        Raises:
            ValueError: for a negative amount (time never goes back).
        """
        if seconds < 0:
            raise ValueError(f"a clock cannot go back ({seconds} s)")
        self.set_ms(self._now_ms + round(seconds * 1000))

    def set_ms(self, epoch_ms: int) -> None:
        """Jump to `epoch_ms`; earlier times are ignored (the clock never goes back)."""
        if epoch_ms <= self._now_ms:
            return
        self._now_ms = epoch_ms
        for listener in list(self._listeners):
            listener()

    def subscribe(self, listener: Listener) -> None:
        """Call `listener()` after every move of the clock."""
        self._listeners.append(listener)

    def unsubscribe(self, listener: Listener) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)
