"""What the demo watches while the services run: which group received which order, the status
stream per order (checked step by step), the flash-sale intake's counters, and the token bucket
that rate-limits the intake.

The intake's backlog is read two ways. The application counts it (requests the broker stored
minus requests handled): exact at every moment. The broker reports it (`RocketApp.consumer_lag`:
the queues' max offset minus the group's committed offset): the view any monitoring has, but a
consumer commits its offsets only every few seconds, so it trails the real progress.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

from order_service.models import OrderStatusChanged

NEXT_STATUS: dict[str | None, frozenset[str]] = {
    None: frozenset({"created"}),
    "created": frozenset({"paid", "cancelled"}),
    "paid": frozenset({"shipped"}),
    "shipped": frozenset(),
    "cancelled": frozenset(),
}
"""The status stream's allowed steps: created -> paid -> shipped, or created -> cancelled."""


@dataclass
class Observations:
    """Everything the listeners report, for the summary and the invariants.

    Attributes:
        seen: per receiver (a group, or `group@instance` for broadcasting) the order ids it
            received, with how many times.
        streams: per order, the status stream as the ORDERLY tracker received it.
        out_of_order: steps the tracker received that do not follow the previous one.
        repeated_steps: steps received twice in a row (at-least-once delivery; harmless).
        inbox_duplicates: redeliveries whose effect the payment inbox had already committed.
        check_backs: (order id, answer) of every transaction check-back.
        rolled_back: (order id, why) of every local transaction that failed.
    """

    seen: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    streams: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    out_of_order: list[str] = field(default_factory=list)
    repeated_steps: int = 0
    inbox_duplicates: int = 0
    check_backs: list[tuple[str, str]] = field(default_factory=list)
    rolled_back: list[tuple[str, str]] = field(default_factory=list)

    def saw(self, receiver: str, order_id: str) -> None:
        self.seen[receiver][order_id] += 1

    def received(self, receiver: str, order_ids: Iterable[str]) -> bool:
        """Whether `receiver` got every one of `order_ids`."""
        got = self.seen.get(receiver, Counter())
        return all(i in got for i in order_ids)

    def record_status(self, change: OrderStatusChanged) -> None:
        """Append one step of an order's stream, checking it follows the previous step."""
        stream = self.streams[change.order_id]
        last = stream[-1] if stream else None
        if last == change.status:
            self.repeated_steps += 1
            return
        if change.status not in NEXT_STATUS[last]:
            self.out_of_order.append(f"{change.order_id}: {last} -> {change.status}")
        stream.append(change.status)


class TokenBucket:
    """A token bucket: `take(n)` returns once n tokens were paid for, at `rate` per second.

    Takers queue on a lock and may run the bucket into debt, so the long-run rate is exact
    whatever the batch size, and a burst is at most `capacity` messages.

    Args:
        rate: tokens per second.
        capacity: tokens saved up while idle (default: a tenth of a second's worth, at least 1).
    """

    def __init__(self, rate: float, capacity: float | None = None) -> None:
        self.rate = rate
        self.capacity = capacity if capacity is not None else max(1.0, rate / 10)
        self._tokens = self.capacity
        self._at = time.monotonic()
        self._lock = asyncio.Lock()

    async def take(self, n: int = 1) -> None:
        async with self._lock:
            now = time.monotonic()
            self._tokens = min(self.capacity, self._tokens + (now - self._at) * self.rate)
            self._at = now
            self._tokens -= n
            if self._tokens < 0:
                await asyncio.sleep(-self._tokens / self.rate)


@dataclass
class IntakeMeter:
    """Counts of the flash-sale intake, and the backlog derived from them.

    Attributes:
        sent: requests the broker stored (counted as each batch send returns).
        processed: requests the intake listener handled (redeliveries included).
        written: requests that were new to the database.
    """

    sent: int = 0
    processed: int = 0
    written: int = 0

    @property
    def lag(self) -> int:
        """Requests stored but not handled yet."""
        return max(0, self.sent - self.processed)


@dataclass(frozen=True, slots=True)
class LagSample:
    """The intake's backlog at one moment of the flash sale.

    Attributes:
        at_s: seconds since the burst started.
        counted: the application's count (sent - handled).
        broker: what the broker reports (None: it could not be asked).
    """

    at_s: float
    counted: int
    broker: int | None
