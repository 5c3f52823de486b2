"""The master/slave replication stream of RocketMQ 4.x (`HAService`, `HAConnection`, `HAClient`).

Two frame layouts on one TCP connection to the master's `haListenPort`, both big-endian:

    slave -> master (a report, 8 bytes)
        offset size  field
             0    8  max_offset    the slave's CommitLog max physical offset (signed long)

    master -> slave (a transfer, 12-byte header + body)
        offset size  field
             0    8  phys_offset   CommitLog physical offset of the body's first byte
             8    4  body_size     bytes that follow; 0 is a heartbeat
            12    n  body          raw CommitLog bytes, exactly as the master stores them

Sans-IO: `TransferDecoder.feed(data)` returns every whole transfer received so far and
`ReportDecoder.feed(data)` every whole report; bytes that cannot be a frame raise `HAFrameError`.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

REPORT = struct.Struct(">q")  # max_offset: 8 bytes
TRANSFER_HEADER = struct.Struct(">qi")  # phys_offset, body_size: 12 bytes
DEFAULT_MAX_BODY_BYTES = 1024 * 1024 * 1024
"""Largest transfer body a decoder accepts unless told otherwise (one default CommitLog segment)."""


class HAFrameError(ValueError):
    """Bytes on the replication connection that cannot be a frame."""


@dataclass(slots=True, frozen=True)
class Transfer:
    """One master -> slave frame: `body` holds the CommitLog bytes from `offset` on."""

    offset: int
    body: bytes

    @property
    def heartbeat(self) -> bool:
        return not self.body

    @property
    def end(self) -> int:
        """The physical offset one past the body's last byte."""
        return self.offset + len(self.body)


def encode_report(max_offset: int) -> bytes:
    """The 8-byte report of a slave whose CommitLog ends at `max_offset`."""
    return REPORT.pack(max_offset)


def encode_transfer_header(offset: int, size: int) -> bytes:
    """The 12-byte header of a transfer of `size` bytes from `offset` (size 0: a heartbeat)."""
    return TRANSFER_HEADER.pack(offset, size)


def encode_transfer(offset: int, body: bytes | memoryview = b"") -> bytes:
    """A whole transfer frame: header and body in one bytes object."""
    return TRANSFER_HEADER.pack(offset, len(body)) + bytes(body)


class TransferDecoder:
    """Buffers the master -> slave stream and cuts it into `Transfer`s."""

    __slots__ = ("_buf", "max_body_bytes")

    def __init__(self, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES) -> None:
        self._buf = bytearray()
        self.max_body_bytes = max_body_bytes

    @property
    def buffered(self) -> int:
        """Bytes of a partial frame held until the rest arrives."""
        return len(self._buf)

    def feed(self, data: bytes | bytearray | memoryview) -> list[Transfer]:
        """Every whole transfer now available; a partial one stays buffered.

        Raises:
            HAFrameError: a header with a negative offset, or a size outside
                0..`max_body_bytes`; the connection is to be closed.
        """
        buf = self._buf
        buf += data
        out: list[Transfer] = []
        pos = 0
        n = len(buf)
        head = TRANSFER_HEADER.size
        while n - pos >= head:
            offset, size = TRANSFER_HEADER.unpack_from(buf, pos)
            if offset < 0:
                raise HAFrameError(f"transfer offset {offset} is negative")
            if size < 0 or size > self.max_body_bytes:
                raise HAFrameError(
                    f"transfer body size {size} is outside 0..{self.max_body_bytes} bytes"
                )
            if n - pos - head < size:
                break
            start = pos + head
            out.append(Transfer(offset, bytes(buf[start : start + size])))
            pos = start + size
        if pos:
            del buf[:pos]
        return out


class ReportDecoder:
    """Buffers the slave -> master stream and cuts it into reported offsets."""

    __slots__ = ("_buf",)

    def __init__(self) -> None:
        self._buf = bytearray()

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def feed(self, data: bytes | bytearray | memoryview) -> list[int]:
        """Every whole report now available, oldest first.

        Raises:
            HAFrameError: a negative offset (no CommitLog ends below 0).
        """
        buf = self._buf
        buf += data
        whole = len(buf) - len(buf) % REPORT.size
        if not whole:
            return []
        offsets = [o for (o,) in REPORT.iter_unpack(bytes(buf[:whole]))]
        del buf[:whole]
        bad = [o for o in offsets if o < 0]
        if bad:
            raise HAFrameError(f"reported offset {bad[0]} is negative")
        return offsets
