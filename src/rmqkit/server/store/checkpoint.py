"""The store checkpoint: how far the CommitLog and the derived files are known to be on disk.

RocketMQ's `StoreCheckpoint` keeps the first 40 bytes; rmqkit adds exact offsets and a CRC so that
recovery needs no timestamp heuristics and a torn checkpoint is noticed:

    offset size  field
         0    8  physic_msg_timestamp      store time of the last flushed CommitLog record (ms)
         8    8  logics_msg_timestamp      same, for the last flushed ConsumeQueue entry
        16    8  index_msg_timestamp       same, for the last flushed index entry
        24    8  master_flushed_offset     (RocketMQ 5.x) CommitLog offset flushed
        32    8  confirm_phy_offset        (RocketMQ 5.x) unused here, kept for layout
        40    8  commit_log_flushed        rmqkit: CommitLog bytes before this are on disk
        48    8  logics_flushed            rmqkit: every ConsumeQueue/index entry for records
                                                   before this CommitLog offset is on disk
        56    4  crc                       rmqkit: crc32 of bytes 0..55

The file is one page, written in place and fdatasync'ed.
"""

from __future__ import annotations

import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

CHECKPOINT = struct.Struct(">qqqqqqq")  # 56 bytes
CRC = struct.Struct(">I")
FILE_BYTES = 4096


@dataclass(slots=True)
class Checkpoint:
    physic_msg_timestamp: int = 0
    logics_msg_timestamp: int = 0
    index_msg_timestamp: int = 0
    commit_log_flushed: int = 0
    logics_flushed: int = 0

    def encode(self) -> bytes:
        body = CHECKPOINT.pack(
            self.physic_msg_timestamp,
            self.logics_msg_timestamp,
            self.index_msg_timestamp,
            self.commit_log_flushed,
            0,
            self.commit_log_flushed,
            self.logics_flushed,
        )
        return body + CRC.pack(zlib.crc32(body))

    @classmethod
    def decode(cls, data: bytes) -> Checkpoint | None:
        """The checkpoint, or None when the bytes are short or torn (CRC mismatch)."""
        if len(data) < CHECKPOINT.size + CRC.size:
            return None
        body = data[: CHECKPOINT.size]
        (crc,) = CRC.unpack_from(data, CHECKPOINT.size)
        if zlib.crc32(body) != crc:
            return None
        p, lg, ix, _master, _confirm, cl, lf = CHECKPOINT.unpack(body)
        return cls(p, lg, ix, cl, lf)


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
