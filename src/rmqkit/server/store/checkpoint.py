"""The store checkpoint: how far the CommitLog and the derived files are known to be on disk.

RocketMQ's `StoreCheckpoint` keeps the first 40 bytes; rmqkit adds exact offsets, where the index
stood, and a CRC, so that recovery needs no timestamp heuristics and a torn checkpoint is noticed:

    offset size  field
         0    8  physic_msg_timestamp      store time of the last flushed CommitLog record (ms)
         8    8  logics_msg_timestamp      same, for the last flushed ConsumeQueue entry
        16    8  index_msg_timestamp       same, for the last flushed index entry
        24    8  master_flushed_offset     (RocketMQ 5.x) CommitLog offset flushed
        32    8  confirm_phy_offset        (RocketMQ 5.x) unused here, kept for layout
        40    8  commit_log_flushed        rmqkit: CommitLog bytes before this are on disk
        48    8  logics_flushed            rmqkit: every ConsumeQueue/index entry for records
                                                   before this CommitLog offset is on disk
        56    8  index_file                rmqkit: name of the last IndexFile, as a number
                                                   (0: there was none; -1: not recorded)
        64   40  index_header              rmqkit: that file's 40-byte header at that moment
                                                   (`index_file.HEADER`): the entries it
                                                   counts are all on disk
       104    8  index_until               rmqkit: every record before this CommitLog offset
                                                   has its entries among those (-1: not
                                                   recorded)
       112    4  crc                       rmqkit: crc32 of bytes 0..111

The file is one page, written in place and fdatasync'ed. Older rmqkit wrote the CRC at byte 104
(before `index_until`) or at byte 56 (before the index fields); such a checkpoint still reads,
with less recorded.
"""

from __future__ import annotations

import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

CHECKPOINT = struct.Struct(">qqqqqqq")  # 56 bytes
INDEX_MARK = struct.Struct(">qqqqqii")  # 48 bytes: index_file, then the header's six fields
INDEX_UNTIL = struct.Struct(">q")
CRC = struct.Struct(">I")
FILE_BYTES = 4096
_MARKED = CHECKPOINT.size + INDEX_MARK.size
_BODY = _MARKED + INDEX_UNTIL.size
NO_MARK = -1


IndexHeader = tuple[int, int, int, int, int, int]
"""An IndexFile header's fields: begin/end timestamp, begin/end physical offset, slots in use,
next entry number (`index_file.HEADER`)."""


@dataclass(frozen=True, slots=True)
class IndexMark:
    """The last IndexFile when a checkpoint was taken, and its header then.

    Every entry that header counts was written and synced before the checkpoint, and is never
    written again; what came later (entries, hash slots, header rewrites) may be torn by a crash.
    """

    file_stamp: int
    """The file's name (`yyyyMMddHHmmssSSS`) as a number; 0 when there was no index file."""
    header: IndexHeader = (0, 0, 0, 0, 0, 0)
    until: int = -1
    """Every CommitLog record before this offset had been indexed (a record boundary); -1
    when not recorded (a checkpoint of older rmqkit, whose mark went with `logics_flushed`)."""


@dataclass(slots=True)
class Checkpoint:
    physic_msg_timestamp: int = 0
    logics_msg_timestamp: int = 0
    index_msg_timestamp: int = 0
    commit_log_flushed: int = 0
    logics_flushed: int = 0
    index: IndexMark | None = None
    """Where the index stood; None when not recorded (the index is rebuilt after a crash)."""

    def encode(self) -> bytes:
        mark = self.index
        body = CHECKPOINT.pack(
            self.physic_msg_timestamp,
            self.logics_msg_timestamp,
            self.index_msg_timestamp,
            self.commit_log_flushed,
            0,
            self.commit_log_flushed,
            self.logics_flushed,
        )
        if mark is not None:
            body += INDEX_MARK.pack(mark.file_stamp, *mark.header) + INDEX_UNTIL.pack(mark.until)
        else:
            body += INDEX_MARK.pack(NO_MARK, 0, 0, 0, 0, 0, 0) + INDEX_UNTIL.pack(-1)
        return body + CRC.pack(zlib.crc32(body))

    @classmethod
    def decode(cls, data: bytes) -> Checkpoint | None:
        """The checkpoint, or None when the bytes are short or torn (CRC mismatch)."""
        for body in (_BODY, _MARKED):
            if (
                len(data) >= body + CRC.size
                and zlib.crc32(data[:body]) == CRC.unpack_from(data, body)[0]
            ):
                stamp, *header = INDEX_MARK.unpack_from(data, CHECKPOINT.size)
                (until,) = INDEX_UNTIL.unpack_from(data, _MARKED) if body == _BODY else (-1,)
                mark = IndexMark(stamp, tuple(header), until) if stamp != NO_MARK else None
                return cls._offsets(data, mark)
        if (
            len(data) >= CHECKPOINT.size + CRC.size
            and zlib.crc32(data[: CHECKPOINT.size]) == CRC.unpack_from(data, CHECKPOINT.size)[0]
        ):
            return cls._offsets(data, None)  # the layout before the index fields
        return None

    @classmethod
    def _offsets(cls, data: bytes, mark: IndexMark | None) -> Checkpoint:
        p, lg, ix, _master, _confirm, cl, lf = CHECKPOINT.unpack_from(data, 0)
        return cls(p, lg, ix, cl, lf, mark)


class CheckpointFile:
    """Reads and rewrites the checkpoint page."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def read(self) -> Checkpoint | None:
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return None
        return Checkpoint.decode(data)

    def write(self, cp: Checkpoint) -> None:
        """Write and fdatasync (blocking: call it from a worker thread on a live broker)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            data = cp.encode()
            os.pwrite(fd, data.ljust(FILE_BYTES, b"\0"), 0)
            os.fdatasync(fd)
        finally:
            os.close(fd)
