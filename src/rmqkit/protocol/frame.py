"""Remoting frames: length-prefixed commands on a TCP stream, decoded without I/O.

    offset size  field
         0    4  length              4 + header_length + body_length (not counting itself)
         4    4  type_and_header     serialize type in the high byte, header length in the low 24
         8    h  header              JSON (type 0) or ROCKETMQ binary (type 1)
       8+h    b  body                the rest of the frame

`FrameDecoder.feed(data)` returns every whole command in what has arrived so far; bytes that
cannot be a frame raise `FrameError`, after which the connection is to be closed.
"""

from __future__ import annotations

import struct

from rmqkit.protocol.codes import SerializeType
from rmqkit.protocol.command import (
    HeaderError,
    RemotingCommand,
    decode_binary_header,
    decode_json_header,
)

PREFIX = struct.Struct(">ii")  # length, type_and_header: 8 bytes
_INT = struct.Struct(">i")
HEADER_LENGTH_MASK = 0xFFFFFF
_JSON = int(SerializeType.JSON)
_ROCKETMQ = int(SerializeType.ROCKETMQ)
DEFAULT_MAX_FRAME_BYTES = 16 * 1024 * 1024
"""RocketMQ's `com.rocketmq.remoting.frameMaxLength` default."""


class FrameError(ValueError):
    """Bytes that are not a valid frame."""


def encode_frame(cmd: RemotingCommand) -> bytes:
    """The whole frame of `cmd`, header in JSON."""
    header = cmd.encode_header()
    body = cmd.body
    return b"".join(
        (PREFIX.pack(4 + len(header) + len(body), len(header) & HEADER_LENGTH_MASK), header, body)
    )


def encode_frame_parts(cmd: RemotingCommand) -> tuple[bytes, bytes | memoryview]:
    """Prefix + header, and the body apart, so a large body is written without a copy."""
    header = cmd.encode_header()
    body = cmd.body
    return PREFIX.pack(4 + len(header) + len(body), len(header)) + header, body


class FrameDecoder:
    """Buffers a byte stream and cuts it into commands."""

    __slots__ = ("_buf", "max_frame_bytes")

    def __init__(self, max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES) -> None:
        self._buf = bytearray()
        self.max_frame_bytes = max_frame_bytes

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def feed(self, data: bytes | bytearray | memoryview) -> list[RemotingCommand]:
        """Every whole command now available; a partial frame stays buffered."""
        buf = self._buf
        buf += data
        out: list[RemotingCommand] = []
        pos = 0
        n = len(buf)
        view = memoryview(buf)  # slices of it copy once; released before `buf` is resized
        max_frame = self.max_frame_bytes
        try:
            while n - pos >= 4:
                if n - pos >= 8:
                    length, type_and_len = PREFIX.unpack_from(buf, pos)
                else:
                    (length,) = _INT.unpack_from(buf, pos)
                    type_and_len = 0
                if length < 4 or length > max_frame:
                    raise FrameError(f"frame length {length} is outside 4..{max_frame} bytes")
                end = pos + 4 + length
                if end > n:
                    break
                stype = (type_and_len >> 24) & 0xFF
                hlen = type_and_len & HEADER_LENGTH_MASK
                if hlen > length - 4:
                    raise FrameError(f"header length {hlen} exceeds frame length {length}")
                hstart = pos + 8
                bstart = hstart + hlen
                header = bytes(view[hstart:bstart])
                try:
                    if stype == _JSON:
                        cmd = decode_json_header(header)
                    elif stype == _ROCKETMQ:
                        cmd = decode_binary_header(header)
                    else:
                        raise FrameError(f"unknown serialize type {stype}")
                except HeaderError as exc:
                    raise FrameError(str(exc)) from exc
                if end > bstart:  # else the b"" the header decoder set
                    cmd.body = bytes(view[bstart:end])
                out.append(cmd)
                pos = end
        finally:
            view.release()
            if pos:
                del buf[:pos]
        return out
