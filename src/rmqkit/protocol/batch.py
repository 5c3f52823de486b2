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


def decode_batch(body: bytes | memoryview) -> list[BatchEntry]:
    """The messages of a batch body; raises `CorruptRecordError` when the sizes do not add up."""
    view = memoryview(body)
    out: list[BatchEntry] = []
    pos = 0
    n = len(view)
    while pos < n:
        if n - pos < _ENTRY_HEAD.size + _PROPS_LEN.size:
            raise CorruptRecordError(f"batch entry {len(out)} is cut short at byte {pos}")
        size, _magic, _crc, flag, blen = _ENTRY_HEAD.unpack_from(view, pos)
        end = pos + size
        p = pos + _ENTRY_HEAD.size
        if size < _ENTRY_HEAD.size + _PROPS_LEN.size or end > n or blen < 0 or p + blen + 2 > end:
            raise CorruptRecordError(f"batch entry {len(out)} has inconsistent sizes at byte {pos}")
        data = bytes(view[p : p + blen])
        p += blen
        (plen,) = _PROPS_LEN.unpack_from(view, p)
        p += 2
        if plen < 0 or p + plen != end:
            raise CorruptRecordError(f"batch entry {len(out)} properties do not fit at byte {pos}")
        try:
            props = bytes(view[p:end]).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise CorruptRecordError(f"batch entry {len(out)} properties are not UTF-8") from exc
        out.append(BatchEntry(body=data, properties=props, flag=flag))
        pos = end
    return out
