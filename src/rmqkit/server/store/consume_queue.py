"""ConsumeQueue: the index of one (topic, queue id), 20 bytes per message, in logical order.

RocketMQ's `ConsumeQueue`. Entry `n` sits at byte `n * 20` of the queue's file sequence:

    offset size  field
         0    8  commit_log_offset   where the record starts in the CommitLog
         8    4  size                the record's total size
        12    8  tags_code           Java String.hashCode of TAGS (0 without tags)

An entry of zeros is a hole (never written, or a pre-filled slot before a queue's first message).
"""

from __future__ import annotations

import logging
import struct
from bisect import bisect_left
from collections.abc import Callable
from pathlib import Path

from rmqkit.server.store.mapped_file import MappedFileQueue

log = logging.getLogger("rmqkit.store.cq")

CQ_ENTRY = struct.Struct(">qiq")  # 20 bytes
ENTRY_BYTES = CQ_ENTRY.size
RESERVE_BYTES = 16 * 1024
"""Disk a queue allocates ahead of its entries at a time (819 entries): small, as a broker may
have thousands of queues."""


class ConsumeQueue:
    """The entries of one queue; `min_offset`/`max_offset` are logical (message counts)."""

    def __init__(self, topic: str, queue_id: int, directory: Path, file_entries: int) -> None:
        self.topic = topic
        self.queue_id = queue_id
        self.files = MappedFileQueue(directory, file_entries * ENTRY_BYTES)
        self.min_logic_bytes = 0
        """Bytes before this were deleted behind the CommitLog, or are pre-filled holes."""
        self.max_physical_end = -1
        """One past the end of the last record this queue points at."""

    # -- loading and recovery -------------------------------------------------------------------

    def load(self) -> None:
        self.files.load()

    def recover(self, keep_below_physical: int) -> None:
        """Drop every entry pointing at or beyond `keep_below_physical`, and any trailing holes.

        Entries are in CommitLog order, so the valid ones form a prefix; scanning from the end of
        the last file finds where it stops.
        """
        fq = self.files
        while fq.files:
            mf = fq.files[-1]
            n = mf.size // ENTRY_BYTES
            last_valid = -1
            for i in range(n - 1, -1, -1):
                phys, size, _ = CQ_ENTRY.unpack_from(mf.mm, i * ENTRY_BYTES)
                if size > 0 and phys >= 0 and phys + size <= keep_below_physical:
                    last_valid = i
                    self.max_physical_end = phys + size
                    break
            if last_valid >= 0:
                fq.truncate(mf.start + (last_valid + 1) * ENTRY_BYTES)
                break
            # No valid entry in this file: it is all holes or all beyond the cut.
            if len(fq.files) == 1:
                fq.truncate(mf.start)
                if mf.start == 0:
                    mf.destroy()
                    fq.files = []
                break
            fq.files.pop()
            mf.destroy()
        if fq.files:
            self.min_logic_bytes = max(self.min_logic_bytes, fq.files[0].start)
            self._skip_leading_holes()

    def _skip_leading_holes(self) -> None:
        """Move `min_logic_bytes` past zero entries at the head (before a first message)."""
        pos = self.min_logic_bytes
        end = self.files.max_offset
        while pos < end:
            mf = self.files.find(pos)
            if mf is None:
                break
            _, size, _ = CQ_ENTRY.unpack_from(mf.mm, pos - mf.start)
            if size > 0:
                break
            pos += ENTRY_BYTES
        self.min_logic_bytes = pos

    # -- writing ----------------------------------------------------------------------------------

    def put(self, queue_offset: int, phys: int, size: int, tags_code: int) -> bool:
        """Write the entry for `queue_offset`; False if that exact entry is already there.

        Raises `DiskFullError` before writing when the file system has no room for the entry.
        """
        at = queue_offset * ENTRY_BYTES
        files = self.files.files
        if files:
            # The usual case, the next entry of the last file, without the general checks below.
            last = files[-1]
            pos = at - last.start
            if pos == last.write_pos and pos + ENTRY_BYTES <= last.reserved:
                CQ_ENTRY.pack_into(last.mm, pos, phys, size, tags_code)
                last.write_pos = pos + ENTRY_BYTES  # no clock read: retention never asks a CQ
                if phys + size > self.max_physical_end:
                    self.max_physical_end = phys + size
                return True
        fq = self.files
        fs = fq.file_size
        if at < fq.max_offset:
            mf = fq.find(at)
            if at < self.min_logic_bytes or mf is None:
                return False
            old_phys, old_size, _ = CQ_ENTRY.unpack_from(mf.mm, at - mf.start)
            if old_phys == phys and old_size == size:
                return False
            log.warning("%s-%d: entry %d rewritten", self.topic, self.queue_id, queue_offset)
        else:
            mf = fq.last()
            if mf is None:
                mf = fq.create((at // fs) * fs)
                self.min_logic_bytes = at
            elif at >= mf.end + fs:
                # A jump of whole files cannot come from our own writer; keep the queue usable.
                log.warning("%s-%d: jump to entry %d", self.topic, self.queue_id, queue_offset)
                for old in list(fq.files):
                    old.destroy()
                fq.files = []
                mf = fq.create((at // fs) * fs)
                self.min_logic_bytes = at
            elif at >= mf.end:
                mf.mark_written(mf.size)
                mf = fq.create(mf.end)
        pos = at - mf.start
        if pos + ENTRY_BYTES > mf.reserved:
            mf.reserve(pos, pos + ENTRY_BYTES, RESERVE_BYTES)
        CQ_ENTRY.pack_into(mf.mm, pos, phys, size, tags_code)
        if pos + ENTRY_BYTES > mf.write_pos:
            mf.mark_written(pos + ENTRY_BYTES)
        if phys + size > self.max_physical_end:
            self.max_physical_end = phys + size
        return True

    # -- reading ----------------------------------------------------------------------------------

    @property
    def min_offset(self) -> int:
        return self.min_logic_bytes // ENTRY_BYTES

    @property
    def max_offset(self) -> int:
        """The logical offset the next message will take (= count when min is 0)."""
        return self.files.max_offset // ENTRY_BYTES

    def entry(self, queue_offset: int) -> tuple[int, int, int] | None:
        """`(commit_log_offset, size, tags_code)` of one entry, or None."""
        if queue_offset < self.min_offset or queue_offset >= self.max_offset:
            return None
        at = queue_offset * ENTRY_BYTES
        mf = self.files.find(at)
        if mf is None:
            return None
        phys, size, code = CQ_ENTRY.unpack_from(mf.mm, at - mf.start)
        return (phys, size, code) if size > 0 else None

    def entries(self, queue_offset: int, limit: int) -> memoryview | None:
        """Up to `limit` entries from `queue_offset`, as one view within a single file."""
        if queue_offset < self.min_offset or queue_offset >= self.max_offset:
            return None
        at = queue_offset * ENTRY_BYTES
        mf = self.files.find(at)
        if mf is None:
            return None
        pos = at - mf.start
        n = min(limit, (mf.write_pos - pos) // ENTRY_BYTES)
        return mf.view(pos, n * ENTRY_BYTES)

    def offset_by_time(self, timestamp_ms: int, store_time: Callable[[int, int], int]) -> int:
        """The first logical offset whose message was stored at or after `timestamp_ms`.

        A binary search over entries, reading each probe's store time from the CommitLog
        (RocketMQ does the same). Past the last message: `max_offset`.
        """
        lo, hi = self.min_offset, self.max_offset

        def key(i: int) -> int:
            e = self.entry(i)
            if e is None:
                return -1
            return store_time(e[0], e[1])

        idx = bisect_left(range(lo, hi), timestamp_ms, key=key)
        return lo + idx

    def correct_min_offset(self, commit_log_min: int) -> None:
        """Move the minimum past entries whose records the CommitLog has deleted."""
        pos = self.min_logic_bytes
        end = self.files.max_offset
        while pos < end:
            mf = self.files.find(pos)
            if mf is None:
                pos = self.files.min_offset
                if pos >= end:
                    break
                continue
            phys, size, _ = CQ_ENTRY.unpack_from(mf.mm, pos - mf.start)
            if size > 0 and phys >= commit_log_min:
                break
            pos += ENTRY_BYTES
        self.min_logic_bytes = pos

    def delete_expired_files(self, commit_log_min: int) -> int:
        """Delete leading files whose entries all point below `commit_log_min`; returns how many."""
        fq = self.files
        gone = 0
        while len(fq.files) > 1:
            mf = fq.files[0]
            last_phys, last_size, _ = CQ_ENTRY.unpack_from(mf.mm, mf.size - ENTRY_BYTES)
            if last_size > 0 and last_phys + last_size <= commit_log_min and fq.delete_first(1):
                gone += 1
            else:
                break
        self.correct_min_offset(commit_log_min)
        return gone

    def close(self) -> None:
        self.files.close()
