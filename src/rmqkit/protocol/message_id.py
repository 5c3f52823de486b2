"""Offset message ids: where a record lives, as the broker reports it after a send.

    ip(4 | 16)  port(4)  physical_offset(8)   -> uppercase hex, 32 chars (IPv4) or 56 (IPv6)

This is RocketMQ's `MessageDecoder.createMessageId`; VIEW_MESSAGE_BY_ID is routed to the address
inside it, so the store host must be the broker's advertised address.
"""

from __future__ import annotations

import struct

from rmqkit.errors import CorruptRecordError
from rmqkit.protocol.record import Host

_ID_V4 = struct.Struct(">4siq")
_ID_V6 = struct.Struct(">16siq")
OFFSET_MSG_ID_V4_LEN = _ID_V4.size * 2
OFFSET_MSG_ID_V6_LEN = _ID_V6.size * 2


def encode_offset_msg_id(store_host: Host, physical_offset: int) -> str:
    """The offset message id of the record at `physical_offset` stored by `store_host`."""
    ip, port = store_host
    layout = _ID_V6 if len(ip) == 16 else _ID_V4
    return layout.pack(ip, port, physical_offset).hex().upper()


def offset_msg_id_prefix(store_host: Host) -> str:
    """What every offset message id of `store_host` starts with; 16 hex digits of the physical
    offset follow (`f"{prefix}{offset:016X}"`, the store's per-message shortcut)."""
    return encode_offset_msg_id(store_host, 0)[:-16]


def decode_offset_msg_id(msg_id: str) -> tuple[Host, int]:
    """`(store_host, physical_offset)` from an offset message id; raises on anything else."""
    if len(msg_id) == OFFSET_MSG_ID_V4_LEN:
        layout = _ID_V4
    elif len(msg_id) == OFFSET_MSG_ID_V6_LEN:
        layout = _ID_V6
    else:
        raise CorruptRecordError(
            f"an offset message id has {OFFSET_MSG_ID_V4_LEN} or {OFFSET_MSG_ID_V6_LEN} hex "
            f"characters, {msg_id!r} has {len(msg_id)}"
        )
    try:
        raw = bytes.fromhex(msg_id)
    except ValueError as exc:
        raise CorruptRecordError(f"offset message id {msg_id!r} is not hex") from exc
    ip, port, offset = layout.unpack(raw)
    if not 0 <= port <= 65535 or offset < 0:
        # A client's message id (UNIQ_KEY) has 32 hex characters too; its pid lands here.
        raise CorruptRecordError(
            f"{msg_id!r} is not an offset message id: it would name port {port} and CommitLog "
            f"offset {offset}"
        )
    return (ip, port), offset
