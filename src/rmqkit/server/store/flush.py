"""Getting appended bytes onto the disk: async flush, group commit, and the derived-file flush.

- `CommitLogFlusher` (ASYNC_FLUSH): syncs on an interval once enough pages are dirty, and at least
  every `thorough_interval_ms` (RocketMQ `FlushRealTimeService`).
- `GroupCommitService` (SYNC_FLUSH): appends wait on a future; the service swaps the waiting list,
  runs one fdatasync for all of them in a worker thread, and resolves them together
  (RocketMQ `GroupCommitService`). A waiter whose flush does not finish within the timeout is
  resolved FLUSH_DISK_TIMEOUT; its message stays stored.
- `LogicsFlusher`: syncs ConsumeQueue and index files, then writes the checkpoint
  (RocketMQ `FlushConsumeQueueService`).
- `GroupTransfer` (SYNC_MASTER): appends wait on a future until a slave reports an offset past
  them; whoever reads slave reports calls `ack()`, which releases the waiters in offset order
  (RocketMQ `GroupTransferService`, without its thread).

fdatasync runs in a worker thread; which files to sync and how far is decided on the event loop
before, and `flushed_pos` is updated on the event loop after, so no list is shared across threads.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import time
from collections import deque
from collections.abc import Callable

from rmqkit.server.service import Service
from rmqkit.server.store.mapped_file import PAGE, MappedFile, MappedFileQueue
from rmqkit.server.store.results import PutStatus

log = logging.getLogger("rmqkit.store.flush")


def _sync_all(files: list[MappedFile]) -> None:
    for mf in files:
        mf.sync()


async def flush_queue(queue: MappedFileQueue) -> int:
    """Sync every dirty file of `queue`; returns the offset now known to be on disk."""
    targets = [(mf, mf.write_pos) for mf in queue.dirty_files()]
    if targets:
        await asyncio.to_thread(_sync_all, [mf for mf, _ in targets])
        for mf, pos in targets:
            if pos > mf.flushed_pos:
                mf.flushed_pos = pos
    return queue.flushed_offset


class CommitLogFlusher(Service):
    """ASYNC_FLUSH: flush when `least_pages` are dirty, or everything every `thorough_ms`."""

    name = "flush-commitlog"

    def __init__(
        self, queue: MappedFileQueue, interval_ms: int, least_pages: int, thorough_ms: int
    ):
        super().__init__(interval_ms / 1000)
        self.queue = queue
        self.least_bytes = least_pages * PAGE
        self.thorough_s = thorough_ms / 1000
        self._last_thorough = time.monotonic()

    async def _run_once(self) -> None:
        dirty = self.queue.max_offset - self.queue.flushed_offset
        now = time.monotonic()
        if dirty <= 0:
            return
        if dirty >= self.least_bytes or now - self._last_thorough >= self.thorough_s:
            self._last_thorough = now
            await flush_queue(self.queue)

    async def _on_stop(self) -> None:
        await flush_queue(self.queue)


class GroupCommitService(Service):
    """SYNC_FLUSH: one fdatasync releases every append that was waiting for it."""

    name = "group-commit"

    def __init__(self, queue: MappedFileQueue, timeout_ms: int) -> None:
        super().__init__(interval_s=0.01)
        self.queue = queue
        self.timeout_s = timeout_ms / 1000
        self._waiting: list[tuple[int, asyncio.Future[PutStatus]]] = []
        self.groups = 0
        """How many fdatasync rounds ran (the benchmark reports records per round)."""

    def request(self, offset: int) -> asyncio.Future[PutStatus]:
        """A future resolved once the CommitLog is on disk up to `offset`."""
        fut: asyncio.Future[PutStatus] = asyncio.get_running_loop().create_future()
        if self.queue.flushed_offset >= offset:
            fut.set_result(PutStatus.OK)
            return fut
        if not self.running:
            fut.set_result(PutStatus.SERVICE_NOT_AVAILABLE)
            return fut
        self._waiting.append((offset, fut))
        self.wakeup()
        return fut

    async def _run_once(self) -> None:
        if not self._waiting:
            return
        batch, self._waiting = self._waiting, []
        loop = asyncio.get_running_loop()
        timer = loop.call_later(self.timeout_s, _expire, batch)
        try:
            flushed = await flush_queue(self.queue)
        except Exception:
            timer.cancel()
            for _, fut in batch:
                if not fut.done():
                    fut.set_result(PutStatus.FLUSH_DISK_TIMEOUT)
            raise
        timer.cancel()
        self.groups += 1
        for offset, fut in batch:
            if not fut.done():
                if flushed >= offset:
                    fut.set_result(PutStatus.OK)
                else:  # appended after we captured the dirty range: wait for the next round
                    self._waiting.append((offset, fut))
        if self._waiting:
            self.wakeup()

    async def _on_stop(self) -> None:
        flushed = await flush_queue(self.queue)
        waiting, self._waiting = self._waiting, []
        for offset, fut in waiting:
            if not fut.done():
                fut.set_result(PutStatus.OK if flushed >= offset else PutStatus.FLUSH_DISK_TIMEOUT)


def _expire(batch: list[tuple[int, asyncio.Future[PutStatus]]]) -> None:
    for _, fut in batch:
        if not fut.done():
            fut.set_result(PutStatus.FLUSH_DISK_TIMEOUT)


class LogicsFlusher(Service):
    """Flushes ConsumeQueue and index files, then records progress in the checkpoint."""

    name = "flush-logics"

    def __init__(self, interval_ms: int, flush: Callable[[], object]) -> None:
        super().__init__(interval_ms / 1000)
        self._flush = flush

    async def _run_once(self) -> None:
        result = self._flush()
        if asyncio.iscoroutine(result):
            await result


class GroupTransfer:
    """SYNC_MASTER: a put that waits for store OK returns once a slave has its bytes.

    The HA service keeps `slave_count` current and calls `ack(offset)` with every slave report;
    each acknowledgement releases, in offset order, every waiter whose records end at or before
    it. A waiter not released within `timeout_ms` gets FLUSH_SLAVE_TIMEOUT (one timer for all,
    armed for the oldest deadline); `close()` gives the same to all still waiting.
    """

    def __init__(self, timeout_ms: int, fallbehind_max_bytes: int) -> None:
        self.timeout_s = timeout_ms / 1000
        self.fallbehind_max = fallbehind_max_bytes
        self.slave_count = 0
        """Slaves connected now (set by the HA service)."""
        self.acked = 0
        """The highest offset any slave has reported (RocketMQ `push2SlaveMaxOffset`)."""
        self.closed = False
        self._by_offset: list[tuple[int, int, asyncio.Future[PutStatus]]] = []
        self._by_deadline: deque[tuple[float, asyncio.Future[PutStatus]]] = deque()
        self._seq = itertools.count()
        self._timer: asyncio.TimerHandle | None = None

    def slave_ok(self, end: int) -> bool:
        """Whether a slave is connected and less than `fallbehind_max` bytes short of `end`."""
        return self.slave_count > 0 and end - self.acked < self.fallbehind_max

    @property
    def waiting(self) -> int:
        """Puts waiting for a slave now."""
        return sum(1 for _, _, f in self._by_offset if not f.done())

    def request(self, end: int) -> asyncio.Future[PutStatus]:
        """A future resolved once a slave reports an offset >= `end` (or with why it was not)."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[PutStatus] = loop.create_future()
        if self.closed:
            fut.set_result(PutStatus.FLUSH_SLAVE_TIMEOUT)
        elif not self.slave_ok(end):
            fut.set_result(PutStatus.SLAVE_NOT_AVAILABLE)
        elif self.acked >= end:
            fut.set_result(PutStatus.OK)
        else:
            heapq.heappush(self._by_offset, (end, next(self._seq), fut))
            deadline = loop.time() + self.timeout_s
            self._by_deadline.append((deadline, fut))
            if self._timer is None:
                self._timer = loop.call_at(deadline, self._expire)
        return fut

    def ack(self, offset: int) -> None:
        """A slave has everything below `offset`: release the waiters it covers."""
        if offset > self.acked:
            self.acked = offset
        heap = self._by_offset
        while heap and heap[0][0] <= self.acked:
            fut = heapq.heappop(heap)[2]
            if not fut.done():
                fut.set_result(PutStatus.OK)

    def _expire(self) -> None:
        self._timer = None
        loop = asyncio.get_running_loop()
        now = loop.time()
        q = self._by_deadline
        while q and (q[0][0] <= now or q[0][1].done()):
            fut = q.popleft()[1]
            if not fut.done():
                fut.set_result(PutStatus.FLUSH_SLAVE_TIMEOUT)
        if len(self._by_offset) > 2 * len(q) + 64:  # drop the timed-out from the offset heap
            self._by_offset = [e for e in self._by_offset if not e[2].done()]
            heapq.heapify(self._by_offset)
        if q:
            self._timer = loop.call_at(q[0][0], self._expire)

    def close(self) -> None:
        """Release every waiter with FLUSH_SLAVE_TIMEOUT; later requests get the same."""
        self.closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for _, _, fut in self._by_offset:
            if not fut.done():
                fut.set_result(PutStatus.FLUSH_SLAVE_TIMEOUT)
        self._by_offset.clear()
        self._by_deadline.clear()
