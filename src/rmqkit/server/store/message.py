"""Messages on their way into the store: one (RocketMQ's `MessageExtBrokerInner`), or the
messages of one batch send still inside its body (`MessageExtBatch`)."""

from __future__ import annotations

from dataclasses import dataclass

from rmqkit.common.properties import PROPERTY_SEPARATOR
from rmqkit.protocol.batch import BatchSpan
from rmqkit.protocol.record import Host

LOOPBACK: Host = (b"\x7f\x00\x00\x01", 0)


def stamp_properties(props: str, stamp: str) -> str:
    """`props` as stored: ended by a separator, then the broker's `stamp` (its own properties,
    each ended by one)."""
    if props and not props.endswith(PROPERTY_SEPARATOR):
        props += PROPERTY_SEPARATOR
    return props + stamp


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


@dataclass(slots=True)
class BatchToStore:
    """The messages of one batch send, to be stored as one record each, contiguously.

    They stay in the request's body (`spans` says where each is): the CommitLog writes each
    record from there, with no `MessageToStore` per message. Only plain messages come this
    way; the broker sends a batch that asks for a delay or a delivery time down the general
    path (`messages()` and `put_messages`), which refuses it with the reason.
    """

    topic: str
    queue_id: int
    body: bytes
    spans: list[BatchSpan]
    stamp: str
    """Appended to each message's properties (`stamp_properties`)."""
    sys_flag: int = 0
    born_timestamp: int = 0
    born_host: Host = LOOPBACK
    reconsume_times: int = 0
    wait_store_ok: bool = True
    """SYNC_FLUSH: wait for the fsync before answering (the first message's WAIT property)."""

    def messages(self) -> list[MessageToStore]:
        """The same messages, each on its own, stored exactly as `put_batch` stores them."""
        body = self.body
        return [
            MessageToStore(
                self.topic, self.queue_id, body[p:q], stamp_properties(props, self.stamp), flag,
                self.sys_flag, self.born_timestamp, self.born_host, self.reconsume_times, 0, -1,
                self.wait_store_ok,
            )
            for p, q, props, flag in self.spans
        ]  # fmt: skip
