"""A message on its way into the store (RocketMQ's `MessageExtBrokerInner`)."""

from __future__ import annotations

from dataclasses import dataclass

from rmqkit.protocol.record import Host

LOOPBACK: Host = (b"\x7f\x00\x00\x01", 0)


@dataclass(slots=True)
class MessageToStore:
    """Everything the CommitLog needs to write one record; offsets are assigned on append."""

    topic: str
    queue_id: int
    body: bytes
    properties: str = ""
    """The encoded properties string (`k\\x01v\\x02...`)."""
    flag: int = 0
    sys_flag: int = 0
    born_timestamp: int = 0
    born_host: Host = LOOPBACK
    reconsume_times: int = 0
    prepared_transaction_offset: int = 0
    body_crc: int = -1
    """CRC of the body; -1 means the store computes it."""
    wait_store_ok: bool = True
    """SYNC_FLUSH: wait for the fsync before answering (property WAIT, default true)."""
