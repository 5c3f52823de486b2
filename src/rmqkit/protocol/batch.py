"""The body of SEND_BATCH_MESSAGE: several messages, each encoded as

    total_size(4) magic(4)=0 body_crc(4)=0 flag(4) body_length(4) body
    properties_length(2) properties

(RocketMQ `MessageDecoder.encodeMessage`/`decodeMessages`). Each inner message carries its own
TAGS, KEYS and UNIQ_KEY in its properties; the broker stores each as a normal record.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from rmqkit.errors import CorruptRecordError

_ENTRY_HEAD = struct.Struct(">iiiii")
"""total_size, magic, body_crc, flag, body_length: 20 bytes."""
_PROPS_LEN = struct.Struct(">h")
_MIN_ENTRY = _ENTRY_HEAD.size + _PROPS_LEN.size


@dataclass(slots=True)
class BatchEntry:
    """One message of a batch body."""

    body: bytes
    properties: str
    flag: int = 0


def encode_batch(entries: list[BatchEntry]) -> bytes:
    """A SEND_BATCH_MESSAGE body for these messages."""
    parts: list[bytes] = []
    for e in entries:
        props = e.properties.encode("utf-8")
        size = _ENTRY_HEAD.size + len(e.body) + _PROPS_LEN.size + len(props)
        parts.append(_ENTRY_HEAD.pack(size, 0, 0, e.flag, len(e.body)))
        parts.append(e.body)
        parts.append(_PROPS_LEN.pack(len(props)))
        parts.append(props)
    return b"".join(parts)


BatchSpan = tuple[int, int, str, int]
"""One message of a batch body, left in place: where its body starts and ends in the batch
body, its properties, its flag."""


def batch_spans(body: bytes) -> list[BatchSpan]:
    """Where the messages of a batch body are; raises `CorruptRecordError` when the sizes do not
    add up or a message's properties are not UTF-8.

    The broker writes each message's body from the batch body straight into its record, so it
    reads only this much of each entry: no object and no copy of the body per message.
    """
    out: list[BatchSpan] = []
    add = out.append
    pos = 0
    n = len(body)
    unpack = _ENTRY_HEAD.unpack_from
    while pos < n:
        if n - pos < _MIN_ENTRY:
            raise CorruptRecordError(f"batch entry {len(out)} is cut short at byte {pos}")
        size, _magic, _crc, flag, blen = unpack(body, pos)
        end = pos + size
        p = pos + _ENTRY_HEAD.size
        q = p + blen  # properties_length
        if size < _MIN_ENTRY or end > n or blen < 0 or q + 2 > end:
            raise CorruptRecordError(f"batch entry {len(out)} has inconsistent sizes at byte {pos}")
        plen = (body[q] << 8) | body[q + 1]
        if plen & 0x8000 or q + 2 + plen != end:  # a negative short, or not up to the end
            raise CorruptRecordError(f"batch entry {len(out)} properties do not fit at byte {pos}")
        try:
            props = body[q + 2 : end].decode("utf-8")
        except UnicodeDecodeError as exc:
            raise CorruptRecordError(f"batch entry {len(out)} properties are not UTF-8") from exc
        add((p, q, props, flag))
        pos = end
    return out


def decode_batch(body: bytes | memoryview) -> list[BatchEntry]:
    """The messages of a batch body, each with a copy of its body (see `batch_spans`)."""
    if not isinstance(body, bytes):
        body = bytes(body)
    return [BatchEntry(body[p:q], props, flag) for p, q, props, flag in batch_spans(body)]
