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
from rmqkit.common.properties import Prop, find_property
from rmqkit.protocol.codes import BLANK_MAGIC, MESSAGE_MAGIC_V1, MESSAGE_MAGIC_V2, SysFlag
from rmqkit.protocol.record import (
    BLANK,
    HEAD_STRUCTS,
    MIN_RECORD_BYTES,
    PREFIX,
    SHORT,
    SYS_FLAG,
    SYS_FLAG_AT,
    USHORT,
    body_crc,
)
from rmqkit.server.service import Service

if TYPE_CHECKING:
    from rmqkit.server.store.commit_log import CommitLog

log = logging.getLogger("rmqkit.store.dispatch")


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
    (sys_flag,) = SYS_FLAG.unpack_from(view, pos + SYS_FLAG_AT)
    head = HEAD_STRUCTS[
        (bool(sys_flag & SysFlag.BORNHOST_V6), bool(sys_flag & SysFlag.STOREHOST_V6))
    ]
    if size < head.size + 3:
        return ScanResult(ScanKind.CORRUPT, reason=f"total size {size} below its fixed part")
    f = head.unpack_from(view, pos)
    blen = f[-1]
    end = pos + size
    p = pos + head.size
    if blen < 0 or p + blen > end:
        return ScanResult(ScanKind.CORRUPT, reason=f"body length {blen} past the record")
    if check_crc:
        (_, _, crc) = PREFIX.unpack_from(view, pos)
        if body_crc(view[p : p + blen]) != crc:
            return ScanResult(ScanKind.CORRUPT, reason="body CRC mismatch")
    p += blen
    if magic == MESSAGE_MAGIC_V1:
        tlen = view[p]
        p += 1
    else:
        (tlen,) = SHORT.unpack_from(view, p)
        p += 2
    if p + tlen + 2 > end:
        return ScanResult(ScanKind.CORRUPT, reason=f"topic length {tlen} past the record")
    try:
        topic = bytes(view[p : p + tlen]).decode("ascii")
        p += tlen
        (plen,) = USHORT.unpack_from(view, p)
        p += 2
        if p + plen != end:
            return ScanResult(ScanKind.CORRUPT, reason="properties length disagrees with size")
        props = bytes(view[p:end]).decode("utf-8")
    except UnicodeDecodeError as exc:
        return ScanResult(ScanKind.CORRUPT, reason=f"undecodable text: {exc}")
    req = DispatchRequest(
        topic=topic,
        queue_id=f[3],
        commit_log_offset=f[6],
        msg_size=size,
        tags_code=tags_code(find_property(props, Prop.TAGS)),
        store_timestamp=f[11],
        consume_queue_offset=f[5],
        keys=find_property(props, Prop.KEYS) or "",
        uniq_key=find_property(props, Prop.UNIQ_CLIENT_MESSAGE_ID_KEYIDX) or "",
        sys_flag=sys_flag,
        prepared_transaction_offset=f[15],
        properties=props,
    )
    return ScanResult(ScanKind.RECORD, size, req)


Dispatcher = Callable[[DispatchRequest], None]


class ReputService(Service):
    """Tails the CommitLog from `reput_offset` and feeds every record to the dispatchers.

    Appends call `wakeup()`, which schedules one drain on the event loop (not a task per message);
    the periodic loop is only a safety net.
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

    def wakeup(self) -> None:
        if not self._scheduled:
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

    def drain(self, limit: int | None = None) -> int:
        """Dispatch what the log has gained; returns how many records were dispatched."""
        n = 0
        cl = self.commit_log
        dispatchers = self.dispatchers
        while self.reput_offset < cl.max_offset and (limit is None or n < limit):
            mf = cl.queue.find(self.reput_offset)
            if mf is None:  # deleted by retention while we lagged: skip to what is left
                self.reput_offset = max(self.reput_offset, cl.min_offset)
                if cl.queue.find(self.reput_offset) is None:
                    break
                continue
            pos = self.reput_offset - mf.start
            scan = scan_record(mf.view(0, mf.write_pos), pos, check_crc=False)
            if scan.kind is ScanKind.RECORD:
                assert scan.request is not None
                for d in dispatchers:
                    d(scan.request)
                self.reput_offset += scan.size
                n += 1
            elif scan.kind is ScanKind.BLANK or (scan.kind is ScanKind.END and mf.full):
                self.reput_offset = mf.end
            else:
                log.error(
                    "reput stopped at offset %d: %s", self.reput_offset, scan.reason or scan.kind
                )
                break
        return n

    async def _run_once(self) -> None:
        self.drain()
