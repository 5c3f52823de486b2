"""Reading the CommitLog as a stream of dispatch requests, and the reput service that tails it.

The ConsumeQueues and IndexFiles are derived data: the reput service reads every record the
CommitLog gains and hands a `DispatchRequest` to each dispatcher. Recovery reads the log the same
way, with CRC checks, to find where the valid log ends and to rebuild what lies past the
checkpoint.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum, auto
from typing import TYPE_CHECKING

from rmqkit.common.hashing import tags_code
from rmqkit.common.properties import (
    NAME_VALUE_SEPARATOR,
    PROPERTY_SEPARATOR,
    Prop,
    find_property,
)
from rmqkit.errors import DiskFullError
from rmqkit.protocol.codes import BLANK_MAGIC, HOST_V6_MASK, MESSAGE_MAGIC_V1, MESSAGE_MAGIC_V2
from rmqkit.protocol.record import (
    BLANK,
    HEAD_BY_HOST_BITS,
    HEAD_V4,
    MIN_RECORD_BYTES,
    SCAN_BY_HOST_BITS,
    SHORT,
    USHORT,
    body_crc,
)
from rmqkit.server.service import Service

if TYPE_CHECKING:
    from rmqkit.server.store.commit_log import CommitLog

log = logging.getLogger("rmqkit.store.dispatch")

_TAGS = Prop.TAGS
_KEYS = Prop.KEYS
_UNIQ_KEY = Prop.UNIQ_CLIENT_MESSAGE_ID_KEYIDX
_SEP = PROPERTY_SEPARATOR
_TAGS_AT = _TAGS + NAME_VALUE_SEPARATOR
_KEYS_AT = _KEYS + NAME_VALUE_SEPARATOR
_UNIQ_AT = _UNIQ_KEY + NAME_VALUE_SEPARATOR
_TAGS_LEN, _KEYS_LEN, _UNIQ_LEN = len(_TAGS_AT), len(_KEYS_AT), len(_UNIQ_AT)


class ScanKind(Enum):
    RECORD = auto()
    BLANK = auto()
    """The blank tail of a segment: continue at the next segment."""
    END = auto()
    """Zeros: nothing was ever written here."""
    CORRUPT = auto()


@dataclass(slots=True)
class DispatchRequest:
    """What a dispatcher needs of one record (RocketMQ `DispatchRequest`)."""

    topic: str
    queue_id: int
    commit_log_offset: int
    msg_size: int
    tags_code: int
    store_timestamp: int
    consume_queue_offset: int
    keys: str
    uniq_key: str
    sys_flag: int
    prepared_transaction_offset: int
    properties: str

    @property
    def transaction_type(self) -> int:
        return self.sys_flag & 0xC


def dispatch_request(
    topic: str,
    queue_id: int,
    commit_log_offset: int,
    size: int,
    store_timestamp: int,
    consume_queue_offset: int,
    sys_flag: int,
    prepared_transaction_offset: int,
    props: str,
) -> DispatchRequest:
    """The request for one record, its tag code and keys looked up in `props`.

    Both the reading of the log (`scan_record`) and the writer (`CommitLog.fresh`) build
    requests here, so the two always agree. Once per record, so `find_property` is written out
    three times: a match counts only at the start of the string or after a separator, else
    (the name inside a value) `find_property` looks on.
    """
    i = props.find(_TAGS_AT)
    if i < 0:
        code = 0
    else:
        if i and props[i - 1] != _SEP:
            tags = find_property(props, _TAGS) or ""
        else:
            i += _TAGS_LEN
            j = props.find(_SEP, i)
            tags = props[i:j] if j >= 0 else props[i:]
        code = tags_code(tags)
    i = props.find(_KEYS_AT)
    if i < 0:
        keys = ""
    elif i and props[i - 1] != _SEP:
        keys = find_property(props, _KEYS) or ""
    else:
        i += _KEYS_LEN
        j = props.find(_SEP, i)
        keys = props[i:j] if j >= 0 else props[i:]
    i = props.find(_UNIQ_AT)
    if i < 0:
        uniq = ""
    elif i and props[i - 1] != _SEP:
        uniq = find_property(props, _UNIQ_KEY) or ""
    else:
        i += _UNIQ_LEN
        j = props.find(_SEP, i)
        uniq = props[i:j] if j >= 0 else props[i:]
    # Positional: keyword arguments cost a measurable share of the reput loop.
    return DispatchRequest(
        topic,
        queue_id,
        commit_log_offset,
        size,
        code,
        store_timestamp,
        consume_queue_offset,
        keys,
        uniq,
        sys_flag,
        prepared_transaction_offset,
        props,
    )


@dataclass(slots=True)
class ScanResult:
    kind: ScanKind
    size: int = 0
    request: DispatchRequest | None = None
    reason: str = ""


def scan_record(view: memoryview, pos: int, *, check_crc: bool) -> ScanResult:
    """Read the record at `pos` of a segment view; never raises on bad bytes."""
    avail = len(view) - pos
    if avail < BLANK.size:
        return ScanResult(ScanKind.END)
    size, magic = BLANK.unpack_from(view, pos)
    if size == 0 and magic == 0:
        return ScanResult(ScanKind.END)
    if magic == BLANK_MAGIC:
        if size != avail:
            return ScanResult(ScanKind.CORRUPT, reason=f"blank of {size} bytes, {avail} remain")
        return ScanResult(ScanKind.BLANK, size)
    if magic not in (MESSAGE_MAGIC_V1, MESSAGE_MAGIC_V2):
        return ScanResult(ScanKind.CORRUPT, reason=f"unknown magic {magic:#010x}")
    if size < MIN_RECORD_BYTES or size > avail:
        return ScanResult(ScanKind.CORRUPT, reason=f"total size {size} with {avail} bytes left")
    # An IPv4 header always fits here (MIN_RECORD_BYTES); re-read only when a host is IPv6.
    f = SCAN_BY_HOST_BITS[0].unpack_from(view, pos)
    sys_flag = f[6]
    host_bits = (sys_flag & HOST_V6_MASK) >> 4
    head_size = HEAD_V4.size
    if host_bits:
        head_size = HEAD_BY_HOST_BITS[host_bits].size
        if size < head_size + 3:
            return ScanResult(ScanKind.CORRUPT, reason=f"total size {size} below its fixed part")
        f = SCAN_BY_HOST_BITS[host_bits].unpack_from(view, pos)
    blen = f[9]
    end = pos + size
    p = pos + head_size
    if blen < 0 or p + blen > end:
        return ScanResult(ScanKind.CORRUPT, reason=f"body length {blen} past the record")
    if check_crc and body_crc(view[p : p + blen]) != f[2]:
        return ScanResult(ScanKind.CORRUPT, reason="body CRC mismatch")
    p += blen
    if magic == MESSAGE_MAGIC_V1:
        if p >= end:
            return ScanResult(ScanKind.CORRUPT, reason="the body leaves no room for the topic")
        tlen = view[p]
        p += 1
    else:
        (tlen,) = SHORT.unpack_from(view, p)
        p += 2
    if p + tlen + 2 > end:
        return ScanResult(ScanKind.CORRUPT, reason=f"topic length {tlen} past the record")
    try:
        topic = str(view[p : p + tlen], "ascii")
        p += tlen
        (plen,) = USHORT.unpack_from(view, p)
        p += 2
        if p + plen != end:
            return ScanResult(ScanKind.CORRUPT, reason="properties length disagrees with size")
        props = str(view[p:end], "utf-8")
    except UnicodeDecodeError as exc:
        return ScanResult(ScanKind.CORRUPT, reason=f"undecodable text: {exc}")
    req = dispatch_request(
        topic,
        f[3],  # queue_id
        f[5],  # commit_log_offset
        size,
        f[7],  # store_timestamp
        f[4],  # consume_queue_offset
        sys_flag,
        f[8],  # prepared_transaction_offset
        props,
    )
    return ScanResult(ScanKind.RECORD, size, req)


Dispatcher = Callable[[list[DispatchRequest]], None]
"""Called with a run of consecutive records, oldest first: one call per run, not per record
(a dispatch listener with nothing to do for a run returns at once)."""


class ReputService(Service):
    """Tails the CommitLog from `reput_offset` and feeds every record to the dispatchers.

    Appends call `wakeup()`, which schedules one drain on the event loop (not a task per message);
    the periodic loop is only a safety net. Each dispatcher gets the records of a drain in runs
    (a list per call, in log order): every dispatcher has seen a run before the next one starts,
    and `reput_offset` passes a run once they all have.
    """

    name = "reput"
    YIELD_EVERY = 4096
    """During a long catch-up, give the event loop a turn this often (records)."""

    def __init__(self, commit_log: CommitLog, dispatchers: list[Dispatcher], reput_offset: int):
        super().__init__(interval_s=1.0)
        self.commit_log = commit_log
        self.dispatchers = dispatchers
        self.reput_offset = reput_offset
        self._scheduled = False
        self.no_room: DiskFullError | None = None
        """Why dispatch waits: a ConsumeQueue or index file found no disk space. The periodic
        loop (every second) tries again; appends do not wake it meanwhile."""

    def wakeup(self) -> None:
        if not self._scheduled and self.no_room is None:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._drain_soon)

    def _drain_soon(self) -> None:
        self._scheduled = False
        self.drain(limit=self.YIELD_EVERY)
        if self.reput_offset < self.commit_log.max_offset:
            self.wakeup()

    @property
    def behind_bytes(self) -> int:
        return self.commit_log.max_offset - self.reput_offset

    def _dispatch(self, run: list[DispatchRequest], end: int) -> bool:
        """Give `run` to every dispatcher; False (and `no_room` set) when the disk is full.

        A run cut short by a full disk is dispatched again whole: the ConsumeQueue skips the
        entries it has, and the index those below `indexed_until`.
        """
        try:
            for d in self.dispatchers:
                d(run)
        except DiskFullError as exc:
            if self.no_room is None:
                log.error("dispatch waits for disk space at offset %d: %s", self.reput_offset, exc)
            self.no_room = exc
            return False
        if self.no_room is not None:
            log.warning("dispatch goes on: disk space found at offset %d", self.reput_offset)
            self.no_room = None
        self.reput_offset = end
        return True

    def drain(self, limit: int | None = None) -> int:
        """Dispatch what the log has gained; returns how many records were dispatched.

        Records this process appended come with their requests ready (`CommitLog.fresh`);
        the rest (replicated, recovered, or past what `fresh` keeps) are read from the log.
        """
        n = 0
        cl = self.commit_log
        fresh = cl.fresh
        record = ScanKind.RECORD
        end = cl.max_offset
        while limit is None or n < limit:
            if self.reput_offset >= end:
                end = cl.max_offset  # a dispatcher may have appended
                if self.reput_offset >= end:
                    break
            room = len(fresh) if limit is None else min(len(fresh), limit - n)
            if room:
                at = self.reput_offset
                req = fresh[0]
                if req.commit_log_offset < at:  # read from the log already
                    fresh.popleft()
                    continue
                if req.commit_log_offset == at:
                    # `fresh` is one stretch with no gap (see CommitLog.fresh): take it whole.
                    if room == len(fresh):
                        run = list(fresh)
                        fresh.clear()
                    else:
                        take = fresh.popleft
                        run = [take() for _ in range(room)]
                    last = run[-1]
                    if not self._dispatch(run, last.commit_log_offset + last.msg_size):
                        break  # read from the log on the next try
                    n += room
                    continue
                stop = req.commit_log_offset
            else:
                stop = end
            mf = cl.queue.find(self.reput_offset)
            if mf is None:  # deleted by retention while we lagged: skip to what is left
                self.reput_offset = max(self.reput_offset, cl.min_offset)
                if cl.queue.find(self.reput_offset) is None:
                    break
                continue
            # One view per segment and pass: every whole record written so far. A dispatcher that
            # appends makes it stale; the loop then ends at its end and the outer loop looks again.
            start = mf.start
            view = mf.view(0, mf.write_pos)
            written = min(len(view), stop - start)
            pos = self.reput_offset - start
            read: list[DispatchRequest] = []
            while True:
                scan = scan_record(view, pos, check_crc=False)
                if scan.kind is not record:
                    break
                assert scan.request is not None
                read.append(scan.request)
                pos += scan.size
                if pos >= written or (limit is not None and n + len(read) >= limit):
                    break
            if read:
                if not self._dispatch(read, start + pos):
                    break
                n += len(read)
            if scan.kind is record:
                continue
            if scan.kind is ScanKind.BLANK or (scan.kind is ScanKind.END and mf.full):
                self.reput_offset = mf.end
            else:
                log.error(
                    "reput stopped at offset %d: %s", self.reput_offset, scan.reason or scan.kind
                )
                break
        return n

    async def _run_once(self) -> None:
        self.drain()
