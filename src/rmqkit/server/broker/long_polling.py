"""Long polling: pulls that found nothing wait here until a message arrives or they time out.

RocketMQ's `PullRequestHoldService`, event-driven: the store's dispatcher calls `notify` for every
new ConsumeQueue entry, and a held pull whose offset is reached (and whose tag codes match) is
woken at once. Each hold is a future plus one timer; nothing polls.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from rmqkit.server.store.dispatch import DispatchRequest


@dataclass(slots=True)
class Hold:
    offset: int
    codes: frozenset[int] | None
    future: asyncio.Future[bool]
    timer: asyncio.TimerHandle


class PullHoldService:
    """Held pulls by (topic, queue id)."""

    def __init__(self) -> None:
        self.holds: dict[tuple[str, int], list[Hold]] = {}

    def hold(self, topic: str, queue_id: int, offset: int, codes: frozenset[int] | None,
             timeout_s: float) -> asyncio.Future[bool]:  # fmt: skip
        """A future that becomes True when a matching message arrives, False on timeout."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[bool] = loop.create_future()
        key = (topic, queue_id)
        holds = self.holds.setdefault(key, [])

        def expire() -> None:
            if not fut.done():
                fut.set_result(False)
            lst = self.holds.get(key)
            if lst is not None:
                self.holds[key] = [h for h in lst if h.future is not fut]
                if not self.holds[key]:
                    del self.holds[key]

        holds.append(Hold(offset, codes, fut, loop.call_later(max(0.0, timeout_s), expire)))
        return fut

    def notify(self, run: list[DispatchRequest]) -> None:
        """Wake the pulls waiting on the queues of these records (store dispatch listener)."""
        if self.holds:
            for req in run:
                self._wake(req)

    def _wake(self, req: DispatchRequest) -> None:
        holds = self.holds.get((req.topic, req.queue_id))
        if not holds:
            return
        keep: list[Hold] = []
        for h in holds:
            if req.consume_queue_offset >= h.offset and (
                h.codes is None or req.tags_code in h.codes
            ):
                h.timer.cancel()
                if not h.future.done():
                    h.future.set_result(True)
            elif not h.future.done():
                keep.append(h)
        if keep:
            self.holds[(req.topic, req.queue_id)] = keep
        else:
            del self.holds[(req.topic, req.queue_id)]

    def wake_all(self) -> None:
        """Release every held pull (broker stopping)."""
        for holds in self.holds.values():
            for h in holds:
                h.timer.cancel()
                if not h.future.done():
                    h.future.set_result(False)
        self.holds.clear()

    @property
    def count(self) -> int:
        return sum(len(v) for v in self.holds.values())
