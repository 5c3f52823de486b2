"""Getting appended bytes onto the disk: async flush, group commit, and the derived-file flush.

- `CommitLogFlusher` (ASYNC_FLUSH): syncs on an interval once enough pages are dirty, and at least
  every `thorough_interval_ms` (RocketMQ `FlushRealTimeService`).
- `GroupCommitService` (SYNC_FLUSH): appends wait on a future; one fdatasync (kernel AIO, or a
  thread) covers all that wait, and the event loop resolves them together
  (RocketMQ `GroupCommitService`). A waiter whose flush does not finish within the timeout is
  resolved FLUSH_DISK_TIMEOUT; its message stays stored.
- `LogicsFlusher`: syncs ConsumeQueue and index files, then writes the checkpoint
  (RocketMQ `FlushConsumeQueueService`).
- `GroupTransfer` (SYNC_MASTER): appends wait on a future until a slave reports an offset past
  them; whoever reads slave reports calls `ack()`, which releases the waiters in offset order
  (RocketMQ `GroupTransferService`, without its thread).

fdatasync runs off the event loop. `flushed_pos` is only ever written on the event loop, from the
write positions read before the sync: a position read before fdatasync is on the disk after it.
What to sync is decided on the loop too; `disk_sync.py` runs the group commit's fdatasync through
the kernel's AIO where it can.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import time
from collections import deque
from collections.abc import Callable

from rmqkit.errors import StoreError
from rmqkit.server.service import Service
from rmqkit.server.store.disk_sync import DiskSync, open_disk_sync
from rmqkit.server.store.mapped_file import PAGE, MappedFile, MappedFileQueue, mark_synced
from rmqkit.server.store.results import PutStatus

log = logging.getLogger("rmqkit.store.flush")


def _sync_all(files: list[MappedFile]) -> None:
    for mf in files:
        mf.sync()


Waiter = tuple[float, asyncio.Future[PutStatus], int]
"""A put waiting for a flush or a slave: its deadline (loop time), its future, its end offset."""


def time_out(waiters: deque[Waiter], now: float, status: PutStatus) -> float | None:
    """Resolve with `status` the waiters at the front of `waiters` (kept in deadline order)
    whose deadline has passed, dropping those already resolved; returns the next deadline."""
    while waiters and (waiters[0][0] <= now or waiters[0][1].done()):
        fut = waiters.popleft()[1]
        if not fut.done():
            fut.set_result(status)
    return waiters[0][0] if waiters else None


FAILED_SYNCS_MAX = 3
"""CommitLog syncs that may fail in a row, each followed by writing its bytes again, before the
store stops taking writes. A disk that fails this often will not keep what it is given, and
every failure writes again all that came since the last good sync."""


def sync_failed(
    queue: MappedFileQueue, targets: list[tuple[MappedFile, int]], error: object
) -> None:
    """After a failed sync of `targets`: write what it was to sync again for the next sync
    (`redirty`), or, at the FAILED_SYNCS_MAXth failure in a row, give the bytes up (`lose`)."""
    queue.failed_syncs += 1
    if queue.failed_syncs < FAILED_SYNCS_MAX:
        redirty(queue, targets)
        return
    for i, (mf, pos) in enumerate(targets):
        if mf.sync_lost is None:
            lose(
                queue,
                targets[i:],
                f"{mf.path}, bytes {mf.flushed_pos} to {pos} were not synced: "
                f"{queue.failed_syncs} syncs in a row failed, the last with {error}",
            )
            return


def synced(queue: MappedFileQueue, targets: list[tuple[MappedFile, int]]) -> None:
    """After a sync of `targets` that succeeded (see `mark_synced`)."""
    mark_synced(targets)
    if queue.failed_syncs and queue.sync_lost is None:
        log.warning("syncing the CommitLog works again, after %d failed tries", queue.failed_syncs)
    queue.failed_syncs = 0


def redirty(queue: MappedFileQueue, targets: list[tuple[MappedFile, int]]) -> None:
    """After a failed sync of `targets`: write what it was to sync again, so that a later sync
    does write it (see `MappedFile.redirty`). On the event loop.

    Where that fails, the bytes are given up (`lose`): bytes past the failure may be missing
    from the disk, and no later sync can tell.
    """
    for i, (mf, pos) in enumerate(targets):
        if mf.sync_lost is not None:
            continue
        try:
            mf.redirty(mf.flushed_pos, pos)
        except (StoreError, ValueError) as exc:  # ValueError: its mapping closed meanwhile
            why = f"{mf.path}, bytes {mf.flushed_pos} to {pos} could not be written again: {exc}"
            lose(queue, targets[i:], why)
            return


def lose(queue: MappedFileQueue, targets: list[tuple[MappedFile, int]], why: str) -> None:
    """Give up the unsynced bytes of `targets`: these files and `queue` get `sync_lost`, so
    nothing from there on counts as synced, and the queue's owner refuses writes."""
    log.error(
        "after a failed sync, %s; these bytes may never reach the disk, so nothing from there "
        "on counts as synced and no more writes are taken",
        why,
    )
    for mf, _ in targets:
        mf.sync_lost = why
    queue.sync_lost = why


async def flush_queue(queue: MappedFileQueue) -> int:
    """Sync every dirty file of `queue`; returns the offset now known to be on disk.

    Raises:
        OSError: the sync failed; what it was to sync has been written again, or given up
            (`sync_failed`).
    """
    targets = queue.dirty_targets()
    if targets:
        try:
            await asyncio.to_thread(_sync_all, [mf for mf, _ in targets])
        except OSError as exc:
            sync_failed(queue, targets, exc)
            raise
        synced(queue, targets)
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
            try:
                await flush_queue(self.queue)
            except OSError as exc:  # one line, no traceback: it says all there is
                log.error(
                    "flush: syncing the CommitLog failed (%s), %d in a row%s",
                    exc,
                    self.queue.failed_syncs,
                    "; its bytes are tried again in the next flush"
                    if self.queue.sync_lost is None
                    else "",
                )

    async def _on_stop(self) -> None:
        await flush_queue(self.queue)


class GroupCommitService:
    """SYNC_FLUSH: one fdatasync releases every append that was waiting for it.

    RocketMQ's `GroupCommitService`. `request` queues a waiter; when no round is in flight it
    starts one once the event loop's turn is done: the dirty CommitLog files and how far each
    is written, handed to a `DiskSync` (kernel AIO, or a thread). When the round is on the
    disk, the waiters it covers are released together, and the ones that came meanwhile start
    the next round.

    `flushed_pos` is only written on the event loop, from positions read before the sync. A
    waiter not released within `timeout_ms` gets FLUSH_DISK_TIMEOUT (one timer, armed for the
    oldest deadline); its message stays stored, and the round in flight is followed by one more
    for it when no later waiter asks for one.
    """

    name = "group-commit"

    def __init__(self, queue: MappedFileQueue, timeout_ms: int) -> None:
        self.queue = queue
        self.timeout_s = timeout_ms / 1000
        self.groups = 0
        """How many fdatasync rounds ran (the benchmark reports records per round)."""
        self.disk_sync: DiskSync | None = None
        self._pending: deque[Waiter] = deque()
        """Waiters in request order, which is offset and deadline order: appends are
        sequential."""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._round: list[tuple[MappedFile, int]] | None = None
        """The files being synced now, each with the position it is synced to."""
        self._round_over: asyncio.Future[None] | None = None
        """Set for `stop`, which waits for the round in flight."""
        self._wanted = 0
        """The furthest offset any waiter asked for, timed out or not."""
        self._round_soon = False
        """A round is to start at the end of the loop's turn (`request`)."""

    @property
    def running(self) -> bool:
        return self.disk_sync is not None

    async def start(self) -> None:
        if self.disk_sync is None:
            self._loop = asyncio.get_running_loop()
            self.disk_sync = open_disk_sync(self._loop, self.name)

    def request(self, offset: int) -> asyncio.Future[PutStatus]:
        """A future resolved once the CommitLog is on disk up to `offset`."""
        loop = self._loop or asyncio.get_running_loop()
        fut: asyncio.Future[PutStatus] = loop.create_future()
        if self.queue.flushed_offset >= offset:
            fut.set_result(PutStatus.OK)
            return fut
        if self.disk_sync is None:
            fut.set_result(PutStatus.SERVICE_NOT_AVAILABLE)
            return fut
        deadline = loop.time() + self.timeout_s
        self._pending.append((deadline, fut, offset))
        self._wanted = max(self._wanted, offset)
        if self._timer is None:
            self._timer = loop.call_at(deadline, self._expire)
        if self._round is None and not self._round_soon:
            # Once this turn of the loop is done, so that the round takes every append of the
            # turn: a read of several batch sends, say, waits for one sync, not two.
            self._round_soon = True
            loop.call_soon(self._start_soon)
        return fut

    def _start_soon(self) -> None:
        self._round_soon = False
        if self._round is None and self.disk_sync is not None and self._pending:
            self._start_round()

    async def stop(self) -> None:
        """Let the round in flight finish, sync what is left, and answer every waiter."""
        disk_sync = self.disk_sync
        if disk_sync is None:
            return
        self.disk_sync = None
        if self._round is not None:
            self._round_over = asyncio.get_running_loop().create_future()
            await self._round_over
        await disk_sync.close()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        flushed = await flush_queue(self.queue)
        pending, self._pending = self._pending, deque()
        for _, fut, offset in pending:
            if not fut.done():
                fut.set_result(PutStatus.OK if flushed >= offset else PutStatus.FLUSH_DISK_TIMEOUT)

    def _start_round(self) -> None:
        targets = self.queue.dirty_targets()
        if not targets:  # synced meanwhile (a file roll, a stop): nothing to wait for
            self._release()
            return
        self._round = targets
        assert self.disk_sync is not None
        self.disk_sync.sync([mf for mf, _ in targets], self._synced)

    def _synced(self, error: BaseException | None) -> None:
        targets, self._round = self._round or [], None
        if error is None:
            synced(self.queue, targets)
            self.groups += 1
            self._release()
        else:
            sync_failed(self.queue, targets, error)
            self._fail(error)
        if self._round_over is not None:
            self._round_over.set_result(None)
            self._round_over = None
        elif (
            self.disk_sync is not None
            and self.queue.sync_lost is None
            and (self._pending or (error is None and self.queue.flushed_offset < self._wanted))
        ):  # waiters, or the records of waiters that timed out (not after a failure: no loop)
            self._start_round()

    def _release(self) -> None:
        flushed = self.queue.flushed_offset
        pending = self._pending
        while pending and pending[0][2] <= flushed:
            fut = pending.popleft()[1]
            if not fut.done():
                fut.set_result(PutStatus.OK)

    def _fail(self, error: BaseException) -> None:
        q = self.queue
        log.error(
            "group commit: syncing the CommitLog failed (%s), %d in a row; %d waiting sends get "
            "FLUSH_DISK_TIMEOUT, their messages stay stored%s",
            error,
            q.failed_syncs,
            len(self._pending),
            " and are written again for the next sync" if q.sync_lost is None else "",
        )
        pending, self._pending = self._pending, deque()
        for _, fut, _ in pending:
            if not fut.done():
                fut.set_result(PutStatus.FLUSH_DISK_TIMEOUT)

    def _expire(self) -> None:
        self._timer = None
        loop = self._loop
        assert loop is not None
        after = time_out(self._pending, loop.time(), PutStatus.FLUSH_DISK_TIMEOUT)
        if after is not None:
            self._timer = loop.call_at(after, self._expire)


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
        self._by_deadline: deque[Waiter] = deque()
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
            self._by_deadline.append((deadline, fut, end))
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
        q = self._by_deadline
        after = time_out(q, loop.time(), PutStatus.FLUSH_SLAVE_TIMEOUT)
        if len(self._by_offset) > 2 * len(q) + 64:  # drop the timed-out from the offset heap
            self._by_offset = [e for e in self._by_offset if not e[2].done()]
            heapq.heapify(self._by_offset)
        if after is not None:
            self._timer = loop.call_at(after, self._expire)

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
