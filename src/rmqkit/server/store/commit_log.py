"""The CommitLog: every message of every topic, appended to one sequence of segment files.

RocketMQ's `CommitLog`. One writer (the event loop's thread: `append` never awaits, so two appends
never interleave); a record never spans segments, a segment's tail is filled with a BLANK record;
reads by physical offset return views into the mapping, not copies.

Under ASYNC_FLUSH records are packed straight into a writable mapping. Under SYNC_FLUSH the
segments are mapped read-only and an append is encoded into a scratch buffer and copied in with
`pwrite` (`MappedFile.write`): the group commit's fdatasync of pages written that way took half
as long (0.53-0.71 ms against 1.03-1.17 ms for 64 records in the broker), which is what a
SYNC_FLUSH send waits for; the sends of one read go in as one run (`append_each`), two
`pwrite`s per segment instead of two per record. Under ASYNC_FLUSH nothing waits for the disk,
and each small `pwrite` costs the kernel more than a copy into the mapping: the store's append
rate halved (44,039 to 46,033 msgs/s against 94,652 to 103,739), so there the mapping stays. See
docs/storage.md and docs/benchmarks.md.
"""

from __future__ import annotations

import logging
import mmap
import struct
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import repeat

from rmqkit.errors import StoreError
from rmqkit.protocol.codes import (
    BLANK_MAGIC,
    HOST_V6_MASK,
    MESSAGE_MAGIC_V1,
    MESSAGE_MAGIC_V2,
    TRANSACTION_TYPE_MASK,
    SysFlag,
)
from rmqkit.protocol.record import (
    BLANK,
    HEAD_BY_HOST_BITS,
    HEAD_STRUCTS,
    MIN_BLANK_BYTES,
    PREFIX,
    Host,
    body_crc,
    encode_record_into,
    host_v6_flags,
)
from rmqkit.server.store.batch_records import BatchPlan, encode_batch_into, plan_batch
from rmqkit.server.store.dispatch import DispatchRequest, ScanKind, dispatch_request, scan_record
from rmqkit.server.store.mapped_file import MappedFile, MappedFileQueue
from rmqkit.server.store.message import BatchToStore, MessageToStore

log = logging.getLogger("rmqkit.store.commitlog")

QueueKey = tuple[str, int]
_PHYS = struct.Struct(">q")
_PHYS_AT = 28
"""Where a record holds its own physical offset (after size, magic, crc, ids, queue offset)."""


class ReplicaMismatchError(StoreError):
    """Replicated bytes that cannot be appended here; the replication link is to be closed."""


@dataclass(slots=True)
class Appended:
    """Where a record was written."""

    physical_offset: int
    size: int
    queue_offset: int
    store_timestamp: int


_NO_QUEUE_OFFSET = (int(SysFlag.TRANSACTION_PREPARED), int(SysFlag.TRANSACTION_ROLLBACK))
_NOT_V6 = ~HOST_V6_MASK
SCRATCH_BYTES = 256 * 1024
"""The buffer records are encoded into before they are copied into the file; grown for a
larger batch (to twice its size, so a run of them grows it once)."""
FRESH_MAX = 16_384
"""Dispatch requests kept for the reput service; past this it reads the records back instead."""


def _whole_part(view: memoryview, pos: int, phys: int, room: int) -> tuple[int, int]:
    """`(length, to_copy)` of the part of `view` from `pos` that goes into the current segment.

    `phys` is the offset of `view[pos]`, `room` the segment's free bytes. Checks every record on
    the way; stops after a BLANK (the segment is then full; only its 8-byte header needs copying)
    or at the end of `view`.
    """
    n = len(view)
    p = pos
    while p < n:
        used = p - pos
        at = phys + used
        if n - p < BLANK.size:
            raise ReplicaMismatchError(f"{n - p} stray bytes at offset {at}")
        size, magic = BLANK.unpack_from(view, p)
        if magic == BLANK_MAGIC:
            if size != room - used:
                raise ReplicaMismatchError(
                    f"the master's segment ends {size} bytes after offset {at}, this store's "
                    f"{room - used} bytes after it: mappedFileSizeCommitLog differs between "
                    "master and slave"
                )
            if size > n - p:
                raise ReplicaMismatchError(f"the BLANK at offset {at} is cut short")
            return used + size, used + BLANK.size
        if magic not in (MESSAGE_MAGIC_V1, MESSAGE_MAGIC_V2):
            raise ReplicaMismatchError(f"no record at offset {at}: magic {magic:#010x}")
        if 0 < size and size + MIN_BLANK_BYTES > room - used:
            raise ReplicaMismatchError(
                f"the record at offset {at} ({size} bytes) would cross this store's segment end"
                ": mappedFileSizeCommitLog differs between master and slave"
            )
        scan = scan_record(view, p, check_crc=True)
        if scan.kind is not ScanKind.RECORD or scan.request is None:
            raise ReplicaMismatchError(f"the record at offset {at} is not valid: {scan.reason}")
        if scan.request.commit_log_offset != at:
            raise ReplicaMismatchError(
                f"the record at offset {at} says it is at {scan.request.commit_log_offset}"
            )
        p += size
    return p - pos, p - pos


def takes_queue_offset(sys_flag: int) -> bool:
    """Half (prepared) and rollback records get no ConsumeQueue slot (RocketMQ does the same)."""
    return (sys_flag & TRANSACTION_TYPE_MASK) not in _NO_QUEUE_OFFSET


class CommitLog:
    """Appends records, finds them by physical offset, and keeps each queue's next offset."""

    def __init__(self, queue: MappedFileQueue, store_host: Host) -> None:
        self.queue = queue
        self.store_host = store_host
        self.queue_offsets: dict[QueueKey, int] = {}
        """Next logical offset of each (topic, queue id), assigned here by the single writer."""
        self._topic_cache: dict[str, bytes] = {}
        self._store_v6 = len(store_host[0]) == 16
        self.fresh: deque[DispatchRequest] = deque()
        """What dispatch needs of each record appended here, oldest first: the reput service
        takes these instead of parsing the records back (up to FRESH_MAX; past that, and for
        replicated or recovered records, it reads the log). Always one stretch of the log with
        no gap: a record is added only next to the last one or to an empty deque, so past
        FRESH_MAX, or at a segment's BLANK end, the writer stops adding until it is taken."""
        self._fresh_end = 0
        """Where the last record added to `fresh` ends."""
        self._scratch = bytearray(SCRATCH_BYTES)

    @property
    def min_offset(self) -> int:
        return self.queue.min_offset

    @property
    def max_offset(self) -> int:
        return self.queue.max_offset

    @property
    def file_size(self) -> int:
        return self.queue.file_size

    def _writable(self, need: int) -> MappedFile:
        """The segment to write `need` bytes into: blanks and rolls when they do not fit."""
        mf = self.queue.last()
        if mf is None:
            return self.queue.create(0)
        free = mf.size - mf.write_pos
        if need + MIN_BLANK_BYTES > free:
            if free >= BLANK.size and mf.write_pos + BLANK.size > mf.reserved:
                mf.reserve(mf.write_pos, mf.write_pos + BLANK.size, 0)
            if mf.warmer is not None:  # no zero-fill in flight where the blank goes
                mf.warmer.release(mf)
            if free >= BLANK.size:
                mf.write(mf.write_pos, BLANK.pack(free, BLANK_MAGIC))
            mf.mark_written(mf.size)
            mf = self.queue.create(mf.end)
        return mf

    def _topic_bytes(self, topic: str) -> bytes:
        b = self._topic_cache.get(topic)
        if b is None:
            b = topic.encode("ascii")
            if len(self._topic_cache) < 100_000:
                self._topic_cache[topic] = b
        return b

    def _measure(self, m: MessageToStore) -> tuple[bytes, bytes, int, int]:
        """`(topic, properties, sys_flag, size)` of the record for `m`, as `_write` takes them."""
        topic_b = self._topic_bytes(m.topic)
        props_b = m.properties.encode("utf-8")
        if self._store_v6 or len(m.born_host[0]) != 4:
            sys_flag = host_v6_flags(m.sys_flag, m.born_host, self.store_host)
        else:
            sys_flag = m.sys_flag & _NOT_V6
        head = HEAD_BY_HOST_BITS[(sys_flag & HOST_V6_MASK) >> 4]
        return topic_b, props_b, sys_flag, head.size + len(m.body) + 3 + len(topic_b) + len(props_b)

    def _write(
        self,
        buf: bytearray | mmap.mmap,
        at: int,
        phys: int,
        m: MessageToStore,
        measured: tuple[bytes, bytes, int, int],
        now_ms: int,
        whole: bool,
    ) -> Appended:
        """Encode `m` at `at` of `buf` (the mapping, or the scratch buffer), to be at physical
        offset `phys`; takes its queue offset. `whole` as `encode_record_into`."""
        topic_b, props_b, sys_flag, size = measured
        if takes_queue_offset(sys_flag):
            key = (m.topic, m.queue_id)
            offsets = self.queue_offsets
            qoff = offsets.get(key, 0)
            offsets[key] = qoff + 1
        else:
            qoff = 0
        crc = m.body_crc if m.body_crc >= 0 else body_crc(m.body)
        encode_record_into(
            buf, at, sys_flag, topic_b, props_b, m.body, m.queue_id, m.flag, qoff, phys,
            m.born_timestamp, m.born_host, now_ms, self.store_host, m.reconsume_times,
            m.prepared_transaction_offset, crc, whole,
        )  # fmt: skip
        fresh = self.fresh
        if len(fresh) < FRESH_MAX and (phys == self._fresh_end or not fresh):
            req = dispatch_request(
                m.topic, m.queue_id, phys, size, now_ms, qoff, sys_flag,
                m.prepared_transaction_offset, m.properties,
            )  # fmt: skip
            fresh.append(req)
            self._fresh_end = phys + size
        return Appended(phys, size, qoff, now_ms)

    def _scratch_for(self, size: int) -> bytearray:
        """The buffer records for a `write` are encoded into, at least `size` bytes long."""
        if size > len(self._scratch):
            self._scratch = bytearray(max(size, 2 * len(self._scratch)))
        return self._scratch

    def _copy_out(
        self,
        mf: MappedFile,
        pos: int,
        size: int,
        taken: Iterable[QueueKey],
        fresh_before: tuple[int, int],
    ) -> None:
        """Write the first `size` bytes of the scratch buffer to `pos` of `mf`: all but the
        first 8 (the first record's total_size and magic), then those (see `append_batch`).

        When a write fails, the queue offsets the records took (one per key `taken` yields, read
        only then) and their fresh requests are given back before the error goes up: nothing of
        them counts as appended, and the next append reuses their place.
        """
        with memoryview(self._scratch) as view:
            try:
                mf.write(pos + 8, view[8:size])
                mf.write(pos, view[:8])
            except StoreError:
                offsets = self.queue_offsets
                for key in taken:
                    if offsets[key] > 1:
                        offsets[key] -= 1
                    else:
                        del offsets[key]  # as before its first record
                fresh = self.fresh
                while len(fresh) > fresh_before[0]:
                    fresh.pop()
                self._fresh_end = fresh_before[1]
                raise

    @staticmethod
    def _taken(
        msgs: Sequence[MessageToStore], measured: Sequence[tuple[bytes, bytes, int, int]]
    ) -> Iterator[QueueKey]:
        """The queue of each record of `msgs` that takes a queue offset (`_copy_out`, which
        reads it only when a write fails)."""
        for m, x in zip(msgs, measured, strict=True):
            if takes_queue_offset(x[2]):
                yield (m.topic, m.queue_id)

    def append(self, msg: MessageToStore, now_ms: int) -> Appended:
        """Write one record; the caller has checked size, topic and properties.

        `append_batch` of one, without its lists (this is every single send's path). Raises
        `DiskFullError` (from `MappedFile.reserve`, or rarely its `write`) with nothing of the
        record counted as written.
        """
        measured = self._measure(msg)
        size = measured[3]
        mf = self._writable(size)
        pos = mf.write_pos
        if pos + size > mf.ahead:
            mf.advance(pos, pos + size)
        if mf.mapped_writable:
            a = self._write(mf.mm, pos, mf.start + pos, msg, measured, now_ms, False)
            BLANK.pack_into(mf.mm, pos, size, MESSAGE_MAGIC_V1)
        else:
            before = (len(self.fresh), self._fresh_end)
            buf = self._scratch_for(size)
            a = self._write(buf, 0, mf.start + pos, msg, measured, now_ms, True)
            self._copy_out(mf, pos, size, self._taken((msg,), (measured,)), before)
        mf.write_pos = pos + size
        return a

    def append_batch(
        self, msgs: tuple[MessageToStore, ...] | list[MessageToStore], now_ms: int
    ) -> list[Appended]:
        """Write several records contiguously in one segment (a batch send lands together).

        The first record's total_size and magic go in last. Into a writable mapping, each
        record is packed in place and those 8 bytes written at the end; otherwise the records
        are encoded into a scratch buffer and copied in with two `write`s, those 8 bytes in the
        second. A process killed mid-write (SIGKILL lands inside a memcpy at a page fault, or
        stops a `pwrite` between two pages) then leaves zeros there, which recovery reads as the
        end of the log. Otherwise a record could look whole but for its properties, which no CRC
        covers, and be served torn. The bytes past write_pos are zeros (new, or zero_from'd), so
        nothing older shows through.
        """
        measured = [self._measure(m) for m in msgs]
        total = sum(x[3] for x in measured)
        if total + MIN_BLANK_BYTES > self.file_size:
            raise ValueError(f"{total} bytes cannot fit a {self.file_size}-byte CommitLog segment")
        return self._append_run(msgs, measured, total, now_ms)

    def append_each(
        self, msgs: list[MessageToStore], now_ms: int
    ) -> tuple[list[Appended], StoreError | None]:
        """Write one record for each of `msgs`, as `append` would one after another, in as few
        writes as the segments allow: the records that fit the current segment go in as one run
        written like `append_batch`, the rest into the next one.

        The broker stores a read's sends this way. Under SYNC_FLUSH that is two `pwrite`s for
        the run instead of two per record; nothing is acknowledged before the group commit, so
        a run cut short by a crash loses only unacknowledged records (recovery ends the log at
        its first record). Returns where each record went, and the error that stopped a run
        (`DiskFullError`, `StoreError`): the records before that run stay written, none of that
        run or after it counts as written.
        """
        measured = [self._measure(m) for m in msgs]
        out: list[Appended] = []
        n = len(msgs)
        i = 0
        while i < n:
            mf = self.queue.last()
            room = (mf.size - mf.write_pos if mf is not None else 0) - MIN_BLANK_BYTES
            if measured[i][3] > room:  # this run opens the next segment (one record always fits)
                room = self.file_size - MIN_BLANK_BYTES
            j, total = i + 1, measured[i][3]
            while j < n and total + measured[j][3] <= room:
                total += measured[j][3]
                j += 1
            try:
                out += self._append_run(msgs[i:j], measured[i:j], total, now_ms)
            except StoreError as exc:
                return out, exc
            i = j
        return out, None

    def _append_run(
        self,
        msgs: Sequence[MessageToStore],
        measured: list[tuple[bytes, bytes, int, int]],
        total: int,
        now_ms: int,
    ) -> list[Appended]:
        """Write the records of `msgs` (`measured`, `total` bytes) together into one segment."""
        mf = self._writable(total)
        first = mf.write_pos
        if first + total > mf.ahead:
            mf.advance(first, first + total)
        out: list[Appended] = []
        phys = mf.start + first
        if mf.mapped_writable:
            pos = first
            for m, x in zip(msgs, measured, strict=True):
                out.append(self._write(mf.mm, pos, mf.start + pos, m, x, now_ms, pos != first))
                pos += x[3]
            BLANK.pack_into(mf.mm, first, measured[0][3], MESSAGE_MAGIC_V1)
        else:
            before = (len(self.fresh), self._fresh_end)
            buf = self._scratch_for(total)
            at = 0
            for m, x in zip(msgs, measured, strict=True):
                out.append(self._write(buf, at, phys + at, m, x, now_ms, True))
                at += x[3]
            self._copy_out(mf, first, total, self._taken(msgs, measured), before)
        # Not mark_written: its clock read matters only once the segment is full (retention),
        # and `_writable` marks it then.
        mf.write_pos = first + total
        return out

    def plan_batch(self, b: BatchToStore) -> BatchPlan:
        """Measure the records `append_planned` writes for `b` (the store checks them first)."""
        if self._store_v6 or len(b.born_host[0]) != 4:
            sys_flag = host_v6_flags(b.sys_flag, b.born_host, self.store_host)
        else:
            sys_flag = b.sys_flag & _NOT_V6
        return plan_batch(b, self._topic_bytes(b.topic), sys_flag)

    def append_planned(
        self, b: BatchToStore, plan: BatchPlan, now_ms: int
    ) -> tuple[int, list[int]]:
        """Write the records of a batch send from its body, as `append_batch` writes records:
        contiguously in one segment, the first record's total_size and magic last, nothing of
        them counted as written when a write fails. Returns the first record's queue offset and
        each record's physical offset (the records are `plan.total` bytes together).
        """
        total = plan.total
        if total + MIN_BLANK_BYTES > self.file_size:
            raise ValueError(f"{total} bytes cannot fit a {self.file_size}-byte CommitLog segment")
        mf = self._writable(total)
        first = mf.write_pos
        if first + total > mf.ahead:
            mf.advance(first, first + total)
        n = len(plan.sizes)
        key = (b.topic, b.queue_id)
        takes = takes_queue_offset(plan.sys_flag)
        qoff = 0
        if takes:
            offsets = self.queue_offsets
            qoff = offsets.get(key, 0)
            offsets[key] = qoff + n
        phys = mf.start + first
        fresh = self.fresh
        # `fresh` stays one stretch with no gap: the batch goes in whole or not at all.
        request = (
            fresh.append
            if len(fresh) + n <= FRESH_MAX and (phys == self._fresh_end or not fresh)
            else None
        )
        host = self.store_host
        if mf.mapped_writable:
            out = encode_batch_into(
                mf.mm, first, phys, b, plan, qoff, takes, now_ms, host, False, request
            )
            BLANK.pack_into(mf.mm, first, plan.sizes[0], MESSAGE_MAGIC_V1)
        else:
            before = (len(fresh), self._fresh_end)
            buf = self._scratch_for(total)
            out = encode_batch_into(buf, 0, phys, b, plan, qoff, takes, now_ms, host, True, request)
            self._copy_out(mf, first, total, repeat(key, n if takes else 0), before)
        if request is not None:
            self._fresh_end = phys + total
        mf.write_pos = first + total
        return qoff, out

    # -- replication ------------------------------------------------------------------------------

    def append_replicated(self, offset: int, data: bytes | memoryview) -> int:
        """Append whole records copied from a master, at exactly `offset`; returns the new end.

        Each record is checked (magic, sizes, body CRC, its own physical offset field) and must
        fit this log's segments as it fitted the master's: a record never crosses a segment end,
        and a BLANK ends exactly at one. Written like `append_batch`, the first 8 bytes of each
        segment's part last, so a slave killed mid-copy recovers to the last whole record.

        Raises:
            ReplicaMismatchError: the bytes do not start at `offset`, do not line up with
                `mappedFileSizeCommitLog`, or fail a record check; nothing of that part is kept.
            DiskFullError: no room for a part; the parts before it are kept.
        """
        view = memoryview(data)
        n = len(view)
        if not n:
            return self.max_offset
        fs = self.file_size
        if not self.queue.files:
            if offset % fs:
                raise ReplicaMismatchError(
                    f"replicated data starts at offset {offset}, which is not a multiple of "
                    f"this store's mappedFileSizeCommitLog ({fs}); the master's must be the same"
                )
            self.queue.create(offset)
        elif offset != self.max_offset:
            raise ReplicaMismatchError(
                f"replicated data starts at offset {offset}, but this CommitLog ends at "
                f"{self.max_offset}"
            )
        pos = 0
        while pos < n:
            mf = self.queue.last()
            assert mf is not None
            if mf.full:
                mf = self.queue.create(mf.end)
            first = mf.write_pos
            part, to_copy = _whole_part(view, pos, mf.start + first, mf.size - first)
            if first + to_copy > mf.reserved:
                mf.reserve(first, first + to_copy)
            mf.write(first + 8, view[pos + 8 : pos + to_copy])
            mf.write(first, view[pos : pos + 8])
            mf.mark_written(first + part)
            pos += part
        return self.max_offset

    def read_whole_records(self, offset: int, max_bytes: int) -> memoryview | None:
        """The records from `offset` on, up to `max_bytes` and never past a segment's end.

        Walks the record sizes, so the view ends on a record boundary; a BLANK tail counts as a
        record that reaches the segment end, and a record larger than `max_bytes` comes alone.
        Empty at the end of the log; None when no record starts at `offset` (deleted, never
        written, or inside a record).
        """
        end_of_log = self.max_offset
        if offset >= end_of_log:
            return memoryview(b"") if offset == end_of_log else None
        mf = self.queue.find(offset)
        if mf is None:
            return None
        start = pos = offset - mf.start
        written = mf.write_pos
        mm = mf.mm
        while pos < written:
            size, magic = BLANK.unpack_from(mm, pos)
            if magic == BLANK_MAGIC:
                size = mf.size - pos
            elif magic not in (MESSAGE_MAGIC_V1, MESSAGE_MAGIC_V2) or size <= 0:
                break
            elif pos == start and _PHYS.unpack_from(mm, pos + _PHYS_AT)[0] != offset:
                break  # inside a record whose bytes happen to look like a header
            if pos + size > written or (pos > start and pos + size - start > max_bytes):
                break
            pos += size
        if pos == start:
            return None
        return mf.view(start, pos - start)

    def read(self, offset: int, size: int) -> memoryview | None:
        """`size` bytes at physical offset `offset`, or None when they are gone or unwritten."""
        mf = self.queue.find(offset)
        if mf is None:
            return None
        pos = offset - mf.start
        if pos + size > mf.write_pos:
            return None
        return mf.view(pos, size)

    def read_record(self, offset: int) -> memoryview | None:
        """The whole record that starts at `offset` (its size read from its own header)."""
        mf = self.queue.find(offset)
        if mf is None:
            return None
        pos = offset - mf.start
        if pos + PREFIX.size > mf.write_pos:
            return None
        size, magic, _ = PREFIX.unpack_from(mf.mm, pos)
        if magic not in (MESSAGE_MAGIC_V1, MESSAGE_MAGIC_V2) or size <= 0:
            return None
        if pos + size > mf.write_pos:
            return None
        return mf.view(pos, size)

    def store_timestamp_at(self, offset: int, size: int) -> int:
        """The STORETIMESTAMP of the record at `offset`, or -1."""
        view = self.read(offset, size)
        if view is None or len(view) < HEAD_STRUCTS[(False, False)].size:
            return -1
        sys_flag = int.from_bytes(view[36:40], "big", signed=True)
        at = 56 if not sys_flag & SysFlag.BORNHOST_V6 else 68
        return int.from_bytes(view[at : at + 8], "big", signed=True)

    def close(self) -> None:
        self.queue.close()
