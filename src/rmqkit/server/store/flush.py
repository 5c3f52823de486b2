"""Getting appended bytes onto the disk: async flush, group commit, and the derived-file flush.

- `CommitLogFlusher` (ASYNC_FLUSH): syncs on an interval once enough pages are dirty, and at least
  every `thorough_interval_ms` (RocketMQ `FlushRealTimeService`).
- `GroupCommitService` (SYNC_FLUSH): appends wait on a future; the service swaps the waiting list,
  runs one fdatasync for all of them in a worker thread, and resolves them together
  (RocketMQ `GroupCommitService`). A waiter whose flush does not finish within the timeout is
  resolved FLUSH_DISK_TIMEOUT; its message stays stored.
- `LogicsFlusher`: syncs ConsumeQueue and index files, then writes the checkpoint
  (RocketMQ `FlushConsumeQueueService`).

fdatasync runs in a worker thread; which files to sync and how far is decided on the event loop
before, and `flushed_pos` is updated on the event loop after, so no list is shared across threads.
"""

from __future__ import annotations

import asyncio
import logging
import time
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
