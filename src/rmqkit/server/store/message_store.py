"""The file-backed message store (the `MessageStore` protocol is in `store_api.py`).

`FileMessageStore` wires the CommitLog, the ConsumeQueues, the IndexFiles, the reput dispatcher,
flushing, the checkpoint, recovery and retention (RocketMQ `DefaultMessageStore`).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

from rmqkit.errors import ConfigurationError, DiskFullError, StoreClosedError, StoreError
from rmqkit.protocol.message_id import offset_msg_id_prefix
from rmqkit.protocol.record import MIN_BLANK_BYTES, Host, as_host, decode_record, record_size
from rmqkit.server.store.checkpoint import Checkpoint, CheckpointFile, IndexMark
from rmqkit.server.store.commit_log import Appended, CommitLog
from rmqkit.server.store.consume_queue import CQ_ENTRY, ConsumeQueue
from rmqkit.server.store.consume_queue_table import ConsumeQueueTable
from rmqkit.server.store.delay import DELAY_MARK, route_delayed
from rmqkit.server.store.dispatch import Dispatcher, ReputService
from rmqkit.server.store.filter import MessageFilter
from rmqkit.server.store.flush import (
    CommitLogFlusher,
    GroupCommitService,
    GroupTransfer,
    LogicsFlusher,
)
from rmqkit.server.store.mapped_file import MappedFile, MappedFileQueue, mark_synced
from rmqkit.server.store.message import BatchToStore, MessageToStore
from rmqkit.server.store.recovery import RecoveryReport, plan_recovery
from rmqkit.server.store.results import GetResult, GetStatus, PutResult, PutStatus, QueryResult
from rmqkit.server.store.retention import CleanService, DiskUsage, disk_usage_of
from rmqkit.server.store.settings import BrokerRole, StoreSettings
from rmqkit.server.store.store_api import (
    check_message,
    check_put,
    classify_offset,
    largest_record_bytes,
)
from rmqkit.server.store.store_index import StoreIndex
from rmqkit.server.store.warm import CommitLogWarmer

log = logging.getLogger("rmqkit.store")

_Asked = tuple["asyncio.Future[PutStatus] | None", "asyncio.Future[PutStatus] | None"]
"""The futures of a flush and a slave wait (`FileMessageStore._ask_stored`)."""

NO_ROOM_LOG_INTERVAL_S = 10.0
"""A failed write (a full disk, an I/O error) is logged, and for a full disk retention woken, at
most this often, not at every refused send."""
MAX_FILTER_SCAN = 16_000
"""Entries one pull may skip over (filtered out) before answering, as RocketMQ does."""
_OK = PutStatus.OK


class FileMessageStore:
    """The file-backed store, byte-compatible with RocketMQ's CommitLog and ConsumeQueue."""

    def __init__(
        self,
        settings: StoreSettings,
        store_host: Host | tuple[str, int] = ("127.0.0.1", 10911),
        *,
        clock_ms: Callable[[], int] | None = None,
        disk_usage: DiskUsage | None = None,
        role: BrokerRole = "ASYNC_MASTER",
    ) -> None:
        self.settings = settings
        self.role: BrokerRole = role
        self.transfer: GroupTransfer | None = None
        """SYNC_MASTER: puts that wait for store OK wait here for a slave's acknowledgement."""
        if role == "SYNC_MASTER":
            self.transfer = GroupTransfer(
                settings.sync_flush_timeout_ms, settings.ha_slave_fallbehind_max_bytes
            )
        self._append_listeners: list[Callable[[], None]] = []
        self.store_host: Host = as_host(store_host)
        self._msg_id_prefix = offset_msg_id_prefix(self.store_host)
        self._max_message_size = settings.max_message_size_bytes
        self.clock_ms = clock_ms or (lambda: time.time_ns() // 1_000_000)
        self._delay_levels = settings.delay_levels_ms
        self.commit_log = CommitLog(
            MappedFileQueue(
                settings.commit_log_dir,
                settings.mapped_file_size_commit_log_bytes,
                mapped_writable=not settings.sync_flush,
            ),
            self.store_host,
        )
        self.consume_queues = ConsumeQueueTable(
            settings.consume_queue_dir, settings.consume_queue_file_entries, self._delay_levels
        )
        self.index = StoreIndex(settings, self._whole_end)
        self.checkpoint_file = CheckpointFile(settings.checkpoint_path)
        self._listeners: list[Dispatcher] = []
        self._valid_topics: set[str] = set()
        self.running = False
        self._waits = False
        self._no_room_logged_at = -NO_ROOM_LOG_INTERVAL_S
        self.recovery: RecoveryReport | None = None
        self._checkpointed: tuple[int, IndexMark | None] = (0, None)
        """The ConsumeQueue and index position the last checkpoint written recorded."""
        self._logics_lost: tuple[int, IndexMark | None] | None = None
        """Set, to `_checkpointed` as it then stood, when syncing the ConsumeQueue or index
        files failed: every later checkpoint records it, and the next start rebuilds them
        from there (see `flush_logics`)."""
        self.reput: ReputService | None = None
        self._flusher: CommitLogFlusher | None = None
        self.warmer: CommitLogWarmer | None = None
        """A master with warmMapedFileEnable: zero-fills (ASYNC_FLUSH) or reads (SYNC_FLUSH) the
        CommitLog ahead of the writer."""
        self._group_commit: GroupCommitService | None = None
        self._logics: LogicsFlusher | None = None
        self.cleaner = CleanService(self, disk_usage or disk_usage_of(settings.commit_log_dir))
        largest = largest_record_bytes(settings.max_message_size_bytes) + MIN_BLANK_BYTES
        if largest > settings.mapped_file_size_commit_log_bytes:
            raise ConfigurationError(
                f"mappedFileSizeCommitLog ({settings.mapped_file_size_commit_log_bytes}) "
                f"cannot hold the largest record that maxMessageSize "
                f"({settings.max_message_size_bytes}) allows: "
                f"{largest} bytes with headers, topic and properties"
            )

    # -- lifecycle --------------------------------------------------------------------------------

    async def start(self) -> None:
        """Load the files, recover from a crash if the abort file says so, start the services."""
        s = self.settings
        s.store_path_root_dir.mkdir(parents=True, exist_ok=True)
        crashed = s.abort_path.exists()
        cp = self.checkpoint_file.read()
        self.commit_log.queue.load()
        self.consume_queues.load()
        report = plan_recovery(self.commit_log.queue, cp, crashed)
        for cq in self.consume_queues.all():
            cq.recover(report.redispatch_from)
            cq.correct_min_offset(self.commit_log.min_offset)
        index_from = self.index.recover(
            cp.index if cp else None, report, clean=cp is not None and not crashed
        )
        self.commit_log.queue_offsets = {
            (cq.topic, cq.queue_id): cq.max_offset
            for cq in self.consume_queues.all()
            if cq.max_offset
        }
        if index_from < report.redispatch_from:
            # The index alone goes back further; the reput below skips what this indexes.
            start = max(index_from, self.commit_log.min_offset)
            n = ReputService(self.commit_log, self.index.dispatchers, start).drain()
            log.warning("index rebuilt from CommitLog offset %d: %d records", start, n)
        self.reput = ReputService(self.commit_log, self._dispatchers(), report.redispatch_from)
        redispatched = self.reput.drain()
        self._refresh_queue_offsets()
        self.recovery = report
        if crashed or report.truncated_from is not None or redispatched:
            log.warning(
                "store recovered%s: CommitLog valid to %d, %d records re-dispatched%s",
                " after a crash" if crashed else "",
                report.valid_end,
                redispatched,
                f", truncated at {report.truncated_from}"
                if report.truncated_from is not None
                else "",
            )
        s.abort_path.parent.mkdir(parents=True, exist_ok=True)
        s.abort_path.touch()
        # What recovery kept or rebuilt reaches the disk before the checkpoint says so: the
        # CommitLog from where re-dispatch began (a crashed ASYNC_FLUSH writer may have left
        # it in the page cache only), and every ConsumeQueue and index file it wrote.
        end = self.commit_log.max_offset
        files = [mf for mf in self.commit_log.queue.files if mf.end > report.redispatch_from]
        files += [mf for mf, _ in self.consume_queues.take_dirty()]
        mark = self.index.mark()
        await asyncio.to_thread(self._sync_and_checkpoint, files, end, end, mark)
        self._checkpointed = (end, mark)
        self._logics_lost = None
        for mf in files:
            mf.flushed_pos = max(mf.flushed_pos, mf.write_pos)
        await self.index.hand_over()
        self.reput.dispatchers = self._dispatchers()
        self.running = True
        await self.reput.start()
        self._waits = s.sync_flush or self.transfer is not None
        if s.sync_flush:
            self._group_commit = GroupCommitService(self.commit_log.queue, s.sync_flush_timeout_ms)
            await self._group_commit.start()
        else:
            self._flusher = CommitLogFlusher(
                self.commit_log.queue,
                s.flush_interval_commit_log_ms,
                s.flush_commit_log_least_pages,
                s.flush_commit_log_thorough_interval_ms,
            )
            await self._flusher.start()
        if s.warm_mapped_file_enable and self.role != "SLAVE":
            # Zeros under SYNC_FLUSH would be dirty pages that every group commit writes too.
            self.warmer = CommitLogWarmer(self.commit_log.queue, zero_fill=not s.sync_flush)
            await self.warmer.start()
        self._logics = LogicsFlusher(s.flush_interval_consume_queue_ms, self.flush_logics)
        await self._logics.start()
        await self.cleaner.start()

    async def stop(self) -> None:
        """Refuse new writes, finish dispatch, flush everything, write the checkpoint."""
        if not self.running:
            return
        self.running = False
        if self.transfer is not None:
            self.transfer.close()
        services = (
            self.cleaner, self.warmer, self._logics, self._group_commit, self._flusher, self.reput
        )  # fmt: skip
        for svc in services:
            if svc is not None:
                await svc.stop()
        assert self.reput is not None
        self.reput.drain()
        end = self.commit_log.max_offset
        files = self.commit_log.queue.files + self.consume_queues.files()
        mark, clean = await self.index.stop()
        logics = end
        if self.commit_log.queue.sync_lost is not None:
            # What the failed sync left may be in the page cache alone: recovery checks from
            # the last offset known to be on disk.
            end = logics = min(end, self.commit_log.queue.flushed_offset)
            clean = False
        if self._logics_lost is not None:
            # The abort file stays: the next start cuts the ConsumeQueues and the index back
            # to the position of the last good sync and rebuilds them from the CommitLog.
            logics, mark = min(logics, self._logics_lost[0]), self._logics_lost[1]
            clean = False
        await asyncio.to_thread(self._sync_and_checkpoint, files, end, logics, mark)
        self.commit_log.close()
        self.consume_queues.close()
        self.index.close()
        if clean:
            self.settings.abort_path.unlink(missing_ok=True)

    def _sync_and_checkpoint(
        self, files: list[MappedFile], end: int, logics: int, mark: IndexMark | None
    ) -> None:
        for mf in files:
            mf.sync()
        for f in self.index.local_files():
            f.sync()
        self._write_checkpoint_sync(end, logics, mark)

    def _write_checkpoint_sync(self, cl_flushed: int, logics: int, mark: IndexMark | None) -> None:
        now = self.clock_ms()
        self.checkpoint_file.write(Checkpoint(now, now, now, cl_flushed, logics, mark))

    async def flush_logics(self) -> None:
        """Sync dirty ConsumeQueue and index files, then record progress in the checkpoint.

        The reput position, the index mark and the files to sync are taken together, between
        two dispatches: every entry for a record before that position is in those files.

        A failed sync is not retried: Linux marks the pages it could not write clean, so a
        later sync would succeed without them. The checkpoint keeps the position of the last
        good one instead, for as long as the store runs, and the stop leaves the abort file:
        the next start cuts the ConsumeQueues and the index back to it and rebuilds them from
        the CommitLog, writing every entry again.
        """
        if self.reput is None:
            return
        reput_at = self.reput.reput_offset
        cl_flushed = self.commit_log.queue.flushed_offset
        local_mark = self.index.mark()
        targets = self.consume_queues.take_dirty()
        index_files = self.index.dirty_files()

        def sync() -> None:
            for mf, _ in targets:
                mf.sync()
            for f in index_files:
                f.sync()

        try:
            await asyncio.to_thread(sync)
        except OSError as exc:
            if self._logics_lost is None:
                self._logics_lost = self._checkpointed
                log.error(
                    "syncing the ConsumeQueue and index files failed (%s); the checkpoint "
                    "keeps CommitLog offset %d as where they are on disk, and the next start "
                    "rebuilds them from there",
                    exc,
                    self._checkpointed[0],
                )
        else:
            mark_synced(targets)
        mark = await self.index.checkpoint_mark(local_mark)
        logics = min(reput_at, cl_flushed)
        if self._logics_lost is not None:
            logics, mark = self._logics_lost
        await asyncio.to_thread(self._write_checkpoint_sync, cl_flushed, logics, mark)
        self._checkpointed = (logics, mark)

    # -- consume queues ---------------------------------------------------------------------------

    def find_consume_queue(self, topic: str, queue_id: int) -> ConsumeQueue | None:
        return self.consume_queues.find(topic, queue_id)

    def _refresh_queue_offsets(self) -> None:
        for cq in self.consume_queues.all():
            key = (cq.topic, cq.queue_id)
            if cq.max_offset > self.commit_log.queue_offsets.get(key, 0):
                self.commit_log.queue_offsets[key] = cq.max_offset

    def _whole_end(self) -> int:
        """Every CommitLog record below this offset is whole: a slave's log may end inside one
        (replication copies bytes), so there it is where dispatch has got to."""
        if self.role != "SLAVE":
            return self.commit_log.max_offset
        return self.reput.reput_offset if self.reput is not None else 0

    def _dispatchers(self) -> list[Dispatcher]:
        return [self.consume_queues.dispatch, *self.index.dispatchers, *self._listeners]

    def add_dispatch_listener(self, listener: Dispatcher) -> None:
        """Call `listener` with each run of records once their ConsumeQueue entries exist.

        Long polling, delays and timers hook here; see `Dispatcher`.
        """
        self._listeners.append(listener)
        if self.reput is not None:
            self.reput.dispatchers = self._dispatchers()

    # -- writing ----------------------------------------------------------------------------------

    def add_append_listener(self, listener: Callable[[], None]) -> None:
        """Called right after every append, before any flush or dispatch (HA wakes up here)."""
        self._append_listeners.append(listener)

    def _state_refusal(self) -> PutResult | None:
        """A refusal of any write while the store is stopped, a slave's, or out of disk."""
        if not self.running:
            return PutResult(
                PutStatus.SERVICE_NOT_AVAILABLE, remark="the message store is not running"
            )
        if self.role == "SLAVE":
            return PutResult(
                PutStatus.SERVICE_NOT_AVAILABLE,
                remark="this is a slave's store: it takes messages only by replication from its"
                " master",
            )
        lost = self.commit_log.queue.sync_lost
        if lost is not None:
            return PutResult(
                PutStatus.SERVICE_NOT_AVAILABLE,
                remark=f"the message store is not writeable: after a failed sync, {lost}; "
                "restart the broker once the disk is sound",
            )
        if self.cleaner.disk_full:
            return PutResult(
                PutStatus.DISK_FULL,
                remark=f"disk use {self.cleaner.last_ratio:.0%} is past diskMaxUsedSpaceRatio "
                f"{self.settings.disk_max_used_space_ratio}%",
            )
        return None

    def _refusal(self, msgs: list[MessageToStore]) -> PutResult | None:
        refusal = self._state_refusal()
        if refusal is not None:
            return refusal
        total = 0
        record_bytes = 0
        for m in msgs:
            bad = check_message(m, self._max_message_size, self._valid_topics)
            if bad is not None:
                return bad
            total += len(m.body)
            record_bytes += record_size(len(m.body), len(m.topic), len(m.properties) * 3, 0x30)
        return self._batch_size_refusal(record_bytes, total)

    def _batch_size_refusal(self, record_bytes: int, body_bytes: int) -> PutResult | None:
        """A batch's refusal for its size: its records (at most `record_bytes`) must fit one
        CommitLog segment, its bodies maxMessageSize."""
        if record_bytes + MIN_BLANK_BYTES > self.commit_log.file_size:
            return PutResult(
                PutStatus.MESSAGE_ILLEGAL,
                remark=f"the batch needs up to {record_bytes} bytes of CommitLog, more than one "
                f"segment ({self.commit_log.file_size}) holds; send it in smaller batches",
            )
        if body_bytes > self._max_message_size:
            return PutResult(
                PutStatus.MESSAGE_ILLEGAL,
                remark=f"the batch is {body_bytes} bytes; maxMessageSize is "
                f"{self._max_message_size}",
            )
        return None

    async def put_message(self, msg: MessageToStore) -> PutResult:
        """Append one message; with SYNC_FLUSH, return once it is on disk (or timed out)."""
        refusal = self._state_refusal()
        if refusal is not None:
            return refusal
        r = self._append_one(msg, self.clock_ms())
        if r.status is not _OK:
            return r
        end = r.physical_offset + r.size
        asked = self._ask_stored(end) if self._waits and msg.wait_store_ok else None
        self._appended()
        if asked is not None:
            r.status = await self._stored(asked)
        return r

    async def put_each(self, msgs: list[MessageToStore]) -> list[PutResult]:
        """Append each message as its own record, as `put_message` would one after another, and
        wait once: for the flush (and the slave) of the last one that asks to wait.

        The broker stores the sends of one read this way. Every message gets its own result;
        a refused one does not stop the others. The records share one store timestamp.
        """
        refusal = self._state_refusal()
        if refusal is not None:
            return [refusal] * len(msgs)
        now = self.clock_ms()
        if len(msgs) == 1:
            results = [self._append_one(msgs[0], now)]
        else:
            results = self._append_each(msgs, now)
        wait_to = -1
        stored = False
        for m, r in zip(msgs, results, strict=True):
            if r.status is _OK:
                stored = True
                if m.wait_store_ok:
                    wait_to = r.physical_offset + r.size
        asked = self._ask_stored(wait_to) if self._waits and wait_to >= 0 else None
        if stored:
            self._appended()
        if asked is not None:
            status = await self._stored(asked)
            if status is not _OK:
                for m, r in zip(msgs, results, strict=True):
                    if r.status is _OK and m.wait_store_ok:
                        r.status = status
        return results

    def _append_one(self, msg: MessageToStore, now_ms: int) -> PutResult:
        """Route, check and append one message: OK with its offsets and id, or the refusal.

        The caller has checked the store's state; it wakes dispatch and waits for the flush.
        One message always fits a segment (checked at start-up): `_refusal`'s batch checks
        cannot refuse it.
        """
        checked = self._checked(msg)
        if isinstance(checked, PutResult):
            return checked
        try:
            a = self.commit_log.append(checked, now_ms)
        except StoreError as exc:
            return self._write_refused(exc)
        return self._put_ok(a)

    def _checked(self, msg: MessageToStore) -> MessageToStore | PutResult:
        """`msg` routed (a delayed message to its schedule queue) and checked, or its refusal."""
        routed = route_delayed(msg, self._delay_levels)
        if routed is not msg:
            if isinstance(routed, PutResult):
                return routed
            msg = routed
        refusal = check_message(msg, self._max_message_size, self._valid_topics)
        return msg if refusal is None else refusal

    def _put_ok(self, a: Appended) -> PutResult:
        msg_id = f"{self._msg_id_prefix}{a.physical_offset:016X}"
        return PutResult(
            _OK, a.physical_offset, a.queue_offset, a.size, a.store_timestamp, msg_id, 1, [msg_id]
        )

    def _append_each(self, msgs: list[MessageToStore], now_ms: int) -> list[PutResult]:
        """`_append_one` for each of `msgs`, the accepted ones appended together
        (`CommitLog.append_each`); a refused one keeps its own result, in its place."""
        checked = [self._checked(m) for m in msgs]
        accepted = [c for c in checked if not isinstance(c, PutResult)]
        appended, error = self.commit_log.append_each(accepted, now_ms) if accepted else ([], None)
        it = iter(appended)
        out: list[PutResult] = []
        for c in checked:
            if isinstance(c, PutResult):
                out.append(c)
            elif (a := next(it, None)) is not None:
                out.append(self._put_ok(a))
            else:  # its run, or one before it, was refused: each send its own result
                assert error is not None
                out.append(self._write_refused(error))
        return out

    def _appended(self) -> None:
        """Records were appended: wake dispatch, and tell the listeners (replication)."""
        assert self.reput is not None
        self.reput.wakeup()
        for listener in self._append_listeners:
            listener()

    async def put_messages(self, msgs: list[MessageToStore]) -> PutResult:
        """Append a batch contiguously; offsets and id of the result are the first message's."""
        if not msgs:
            return PutResult(PutStatus.MESSAGE_ILLEGAL, remark="an empty batch")
        if any(route_delayed(m, self._delay_levels) is not m for m in msgs):
            return PutResult(
                PutStatus.MESSAGE_ILLEGAL, remark="a batch cannot hold delayed messages"
            )
        refusal = self._refusal(msgs)
        if refusal is not None:
            return refusal
        try:
            appended = self.commit_log.append_batch(msgs, self.clock_ms())
        except StoreError as exc:
            return self._write_refused(exc)
        return await self._finish(appended, msgs[0].wait_store_ok)

    async def put_batch(self, batch: BatchToStore) -> PutResult:
        """Append the messages of a batch send contiguously, each record written straight from
        the request's body (`batch_records.py`): stored, and refused, as `put_messages` stores
        and refuses `batch.messages()`."""
        if not batch.spans:
            return PutResult(PutStatus.MESSAGE_ILLEGAL, remark="an empty batch")
        if any(DELAY_MARK in props for _, _, props, _ in batch.spans):
            return await self.put_messages(batch.messages())  # which refuses it, with the reason
        refusal = self._state_refusal()
        if refusal is not None:
            return refusal
        cl = self.commit_log
        plan = cl.plan_batch(batch)
        body = plan.largest_body
        if body > self._max_message_size:  # named as `put_messages` names it: the first
            body = next(q - p for p, q, _, _ in batch.spans if q - p > self._max_message_size)
        refusal = check_put(
            batch.topic, batch.queue_id, body, plan.largest_properties, self._max_message_size,
            self._valid_topics,
        ) or self._batch_size_refusal(plan.total, plan.body_bytes)  # fmt: skip
        if refusal is not None:
            return refusal
        now = self.clock_ms()
        try:
            queue_offset, offsets = cl.append_planned(batch, plan, now)
        except StoreError as exc:
            return self._write_refused(exc)
        return await self._finish_run(offsets, queue_offset, plan.total, now, batch.wait_store_ok)

    def _write_refused(self, exc: StoreError) -> PutResult:
        """The refusal of a write the file system failed (`DiskFullError`: no room; else an
        I/O error of a `pwrite`): nothing of it counts as written."""
        full = isinstance(exc, DiskFullError)
        now = time.monotonic()
        if now - self._no_room_logged_at >= NO_ROOM_LOG_INTERVAL_S:
            self._no_room_logged_at = now
            log.error("refusing writes: %s", exc)
            if full:
                self.cleaner.wakeup()  # deleting expired files may make room, whatever the hour
        return PutResult(PutStatus.DISK_FULL if full else PutStatus.UNKNOWN_ERROR, remark=str(exc))

    async def _finish(self, appended: list[Appended], wait: bool) -> PutResult:
        first = appended[0]
        return await self._finish_run(
            [a.physical_offset for a in appended],
            first.queue_offset,
            sum(a.size for a in appended),
            first.store_timestamp,
            wait,
        )

    async def _finish_run(
        self, offsets: list[int], queue_offset: int, size: int, stored_at: int, wait: bool
    ) -> PutResult:
        """The result of a batch appended as records at `offsets`, `size` bytes together, the
        first at `queue_offset`: wakes dispatch and, when asked, waits for flush and slave."""
        first = offsets[0]
        asked = self._ask_stored(first + size) if wait and self._waits else None
        self._appended()
        status = _OK if asked is None else await self._stored(asked)
        prefix = self._msg_id_prefix
        ids = [f"{prefix}{phys:016X}" for phys in offsets]
        return PutResult(status, first, queue_offset, size, stored_at, ids[0], len(offsets), ids)

    def _ask_stored(self, end: int) -> _Asked:
        """Ask for the log to be flushed (SYNC_FLUSH) and replicated (SYNC_MASTER) to `end`
        (callers ask only when `_waits`).

        Asked before dispatch is woken (`_appended`): the group commit starts its round once the
        event loop's current turn is done (see `GroupCommitService.request`), so the round takes
        every append of the turn, a network read's batches with it, and starts ahead of the
        dispatch of those records, not behind it.
        """
        # Both waits run at once; a disk flush failure is reported before a slave's.
        flushed = None if self._group_commit is None else self._group_commit.request(end)
        replicated = None if self.transfer is None else self.transfer.request(end)
        return flushed, replicated

    async def _stored(self, asked: _Asked) -> PutStatus:
        """Wait for what `_ask_stored` asked."""
        flushed, replicated = asked
        status = _OK
        if flushed is not None:
            status = await flushed
        if replicated is not None:
            replica_status = await replicated
            if status is _OK:
                status = replica_status
        return status

    # -- replication ------------------------------------------------------------------------------

    def append_replicated(self, offset: int, data: bytes | memoryview) -> int:
        """Slave: append whole records copied from the master at `offset`; returns the new end.

        `offset` must be this store's max physical offset (any multiple of
        mappedFileSizeCommitLog while the store is empty). The reput service then builds the
        ConsumeQueues and IndexFiles; the store's own flush settings apply.

        Raises:
            ReplicaMismatchError: see `CommitLog.append_replicated`.
            StoreClosedError: the store is not running.
        """
        if not self.running:
            raise StoreClosedError("the message store is not running")
        end = self.commit_log.append_replicated(offset, data)
        assert self.reput is not None
        self.reput.wakeup()
        if self._group_commit is not None:
            self._group_commit.request(end)  # SYNC_FLUSH: flush soon; nobody waits for it
        return end

    def read_replica(self, offset: int, max_bytes: int) -> memoryview | None:
        """Master: whole records from `offset` for a slave (see `CommitLog.read_whole_records`)."""
        return self.commit_log.read_whole_records(offset, max_bytes)

    # -- reading ----------------------------------------------------------------------------------

    def get_message(
        self,
        topic: str,
        queue_id: int,
        offset: int,
        max_msgs: int,
        message_filter: MessageFilter | None = None,
    ) -> GetResult:
        """Up to `max_msgs` records from `offset`, filtered; the status says why there are none."""
        cq = self.find_consume_queue(topic, queue_id)
        if cq is None:
            return GetResult(GetStatus.NO_MATCHED_LOGIC_QUEUE, 0, 0, 0)
        lo, hi = cq.min_offset, cq.max_offset
        early = classify_offset(offset, lo, hi)
        if early is not None:
            return early
        s = self.settings
        max_msgs = max(1, min(max_msgs, s.max_transfer_count_on_message_in_memory))
        max_bytes = s.max_transfer_bytes_on_message_in_memory
        result = GetResult(GetStatus.NO_MATCHED_MESSAGE, offset, lo, hi)
        records, qoffs = result.records, result.queue_offsets
        cl = self.commit_log
        cl_min = cl.min_offset
        total = 0
        nxt = offset
        removing = False
        while nxt < hi and nxt - offset < MAX_FILTER_SCAN and len(records) < max_msgs:
            view = cq.entries(nxt, 1024)
            if view is None or not len(view):
                if not records:
                    result.status = GetStatus.OFFSET_FOUND_NULL
                break
            stop = False
            for phys, size, code in CQ_ENTRY.iter_unpack(view):
                if size <= 0:
                    nxt += 1
                    continue
                if phys < cl_min:
                    removing = True
                    nxt += 1
                    continue
                if message_filter is not None and not message_filter.matches_tags_code(code):
                    nxt += 1
                    continue
                rec = cl.read(phys, size)
                if rec is None:
                    removing = True
                    nxt += 1
                    continue
                if message_filter is not None and not message_filter.matches_record(rec):
                    nxt += 1
                    continue
                if records and total + size > max_bytes:
                    stop = True
                    break
                records.append(rec)
                qoffs.append(nxt)
                total += size
                nxt += 1
                if len(records) >= max_msgs:
                    stop = True
                    break
            if stop:
                break
        result.next_begin_offset = nxt
        if records:
            result.status = GetStatus.FOUND
        elif removing:
            result.status = GetStatus.MESSAGE_WAS_REMOVING
        return result

    def get_max_offset(self, topic: str, queue_id: int) -> int:
        cq = self.find_consume_queue(topic, queue_id)
        return cq.max_offset if cq else 0

    def get_min_offset(self, topic: str, queue_id: int) -> int:
        cq = self.find_consume_queue(topic, queue_id)
        return cq.min_offset if cq else 0

    def get_offset_by_time(self, topic: str, queue_id: int, timestamp_ms: int) -> int:
        cq = self.find_consume_queue(topic, queue_id)
        if cq is None:
            return 0
        return cq.offset_by_time(timestamp_ms, self.commit_log.store_timestamp_at)

    def get_store_time(self, topic: str, queue_id: int, offset: int) -> int:
        cq = self.find_consume_queue(topic, queue_id)
        e = cq.entry(offset) if cq else None
        return self.commit_log.store_timestamp_at(e[0], e[1]) if e else -1

    def get_earliest_store_time(self, topic: str, queue_id: int) -> int:
        return self.get_store_time(topic, queue_id, self.get_min_offset(topic, queue_id))

    def earliest_message_time(self) -> int:
        """The store time of the oldest record the CommitLog holds, -1 when it holds none."""
        cl = self.commit_log
        rec = cl.read_record(cl.min_offset) if cl.max_offset > cl.min_offset else None
        return cl.store_timestamp_at(cl.min_offset, len(rec)) if rec is not None else -1

    def look_message_by_offset(self, physical_offset: int) -> memoryview | None:
        if physical_offset < self.commit_log.min_offset:
            return None
        return self.commit_log.read_record(physical_offset)

    async def query_message(
        self, topic: str, key: str, max_num: int, begin_ms: int, end_ms: int
    ) -> QueryResult:
        """Records of `topic` whose KEYS or UNIQ_KEY equal `key`, stored within the time range."""
        found, last_ms, last_phy = await self.index.lookup(
            topic, key, max_num * 2, begin_ms, end_ms
        )
        out = QueryResult(
            index_last_update_timestamp=last_ms, index_last_update_phy_offset=last_phy
        )
        for phys in found:
            rec = self.look_message_by_offset(phys)
            if rec is None:
                continue
            try:
                m = decode_record(rec, inflate=False)
            except Exception:
                continue
            if m.topic != topic or (key != m.uniq_key and key not in m.keys):
                continue  # a hash collision, or an entry left behind by a truncation
            out.records.append(rec)
            out.physical_offsets.append(phys)
            if len(out.records) >= max_num:
                break
        return out

    @property
    def max_physical_offset(self) -> int:
        return self.commit_log.max_offset

    @property
    def min_physical_offset(self) -> int:
        return self.commit_log.min_offset

    @property
    def dispatch_behind_bytes(self) -> int:
        return self.reput.behind_bytes if self.reput else 0

    def disk_root(self) -> Path:
        return Path(os.path.abspath(self.settings.commit_log_dir))
