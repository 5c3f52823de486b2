"""Request-reply in an in-memory broker (RocketMQ's `ReplyMessageProcessor` and the client's
`RequestFutureHolder` in one): a reply, a message with MSG_TYPE=reply, goes to the request waiting
under its CORRELATION_ID instead of to a consumer.

A request fails with `RequestTimeoutError` when the fake clock passes its deadline, or when its
timeout has passed in real time (so a test without a replier does not hang).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from rmqkit.common.properties import Prop
from rmqkit.errors import RequestTimeoutError
from rmqkit.protocol.record import StoredMessage

log = logging.getLogger("rmqkit.testing.memory")


@dataclass(slots=True)
class Waiter:
    """One request waiting for its reply."""

    correlation_id: str
    topic: str
    timeout_ms: int
    deadline_ms: int
    """On the fake clock."""
    future: asyncio.Future[StoredMessage]
    timer: asyncio.TimerHandle


class ReplyWaiters:
    """Correlation id -> the request waiting for its reply."""

    def __init__(self) -> None:
        self.pending: dict[str, Waiter] = {}
        self.dropped: list[StoredMessage] = []
        """Replies no request waited for (late, duplicated or foreign)."""

    def register(self, cid: str, timeout_ms: int, topic: str, now_ms: int) -> Waiter:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[StoredMessage] = loop.create_future()
        timer = loop.call_later(timeout_ms / 1000, self._time_out, cid)
        w = self.pending[cid] = Waiter(cid, topic, timeout_ms, now_ms + timeout_ms, fut, timer)
        return w

    def complete(self, reply: StoredMessage) -> bool:
        """Hand `reply` to its request; False (and kept in `dropped`) when none waits."""
        w = self.pending.pop(reply.properties.get(Prop.CORRELATION_ID, ""), None)
        if w is None or w.future.done():
            self.dropped.append(reply)
            return False
        w.timer.cancel()
        w.future.set_result(reply)
        return True

    def discard(self, cid: str) -> None:
        w = self.pending.pop(cid, None)
        if w is not None:
            w.timer.cancel()
            if not w.future.done():
                w.future.cancel()

    def expire(self, now_ms: int) -> None:
        """Fail the requests whose deadline the fake clock has passed."""
        for cid in [c for c, w in self.pending.items() if now_ms > w.deadline_ms]:
            self._time_out(cid)

    def next_deadline_ms(self) -> int | None:
        """The first fake-clock moment at which a request expires (one ms past its deadline)."""
        return min((w.deadline_ms + 1 for w in self.pending.values()), default=None)

    def _time_out(self, cid: str) -> None:
        w = self.pending.pop(cid, None)
        if w is None:
            return
        w.timer.cancel()
        log.info("request %s to %s timed out after %d ms", cid, w.topic, w.timeout_ms)
        if not w.future.done():
            w.future.set_exception(RequestTimeoutError(cid, w.timeout_ms, w.topic))
