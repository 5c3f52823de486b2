"""What every message store offers, and the rules both stores apply alike.

`MessageStore` is the protocol the broker talks to (RocketMQ's `MessageStore` interface);
`FileMessageStore` and `MemoryMessageStore` implement it, and one contract suite runs against
both. The checks of a message to store and the answer for an offset outside a queue live here so
the two cannot drift apart.
"""

from __future__ import annotations

from typing import Protocol

from rmqkit.common.names import topic_problem
from rmqkit.protocol.record import MAX_PROPERTIES_BYTES, record_size
from rmqkit.server.store.dispatch import Dispatcher
from rmqkit.server.store.filter import MessageFilter
from rmqkit.server.store.message import BatchToStore, MessageToStore
from rmqkit.server.store.results import GetResult, GetStatus, PutResult, PutStatus, QueryResult


class MessageStore(Protocol):
    """What the broker needs of a store; `FileMessageStore` and `MemoryMessageStore` provide it."""

    async def start(self) -> None: ...
    async def stop(self) -> None: ...
    async def put_message(self, msg: MessageToStore) -> PutResult: ...
    async def put_messages(self, msgs: list[MessageToStore]) -> PutResult: ...
    async def put_batch(self, batch: BatchToStore) -> PutResult: ...
    async def put_each(self, msgs: list[MessageToStore]) -> list[PutResult]: ...
    def get_message(
        self,
        topic: str,
        queue_id: int,
        offset: int,
        max_msgs: int,
        message_filter: MessageFilter | None = None,
    ) -> GetResult: ...
    def get_max_offset(self, topic: str, queue_id: int) -> int: ...
    def get_min_offset(self, topic: str, queue_id: int) -> int: ...
    def get_offset_by_time(self, topic: str, queue_id: int, timestamp_ms: int) -> int: ...
    def get_earliest_store_time(self, topic: str, queue_id: int) -> int: ...
    def get_store_time(self, topic: str, queue_id: int, offset: int) -> int: ...
    def look_message_by_offset(self, physical_offset: int) -> memoryview | None: ...
    async def query_message(
        self, topic: str, key: str, max_num: int, begin_ms: int, end_ms: int
    ) -> QueryResult: ...
    def add_dispatch_listener(self, listener: Dispatcher) -> None: ...
    @property
    def max_physical_offset(self) -> int: ...
    @property
    def min_physical_offset(self) -> int: ...


def check_message(msg: MessageToStore, max_size: int, valid_topics: set[str]) -> PutResult | None:
    """A refusal for a message the store must not take, or None."""
    props = msg.properties
    # Its UTF-8 length only when its length in characters leaves a doubt.
    plen = len(props) if len(props) <= MAX_PROPERTIES_BYTES // 3 else len(props.encode("utf-8"))
    return check_put(msg.topic, msg.queue_id, len(msg.body), plen, max_size, valid_topics)


def check_put(
    topic: str, queue_id: int, body_bytes: int, props_bytes: int, max_size: int,
    valid_topics: set[str],
) -> PutResult | None:  # fmt: skip
    """`check_message` of a message with a body and properties (UTF-8) of these lengths; a
    batch asks once with its largest."""
    if topic not in valid_topics:
        problem = topic_problem(topic)
        if problem:
            return PutResult(PutStatus.MESSAGE_ILLEGAL, remark=problem)
        if len(valid_topics) < 100_000:
            valid_topics.add(topic)
    if body_bytes > max_size:
        return PutResult(
            PutStatus.MESSAGE_ILLEGAL,
            remark=f"the body is {body_bytes} bytes; maxMessageSize is {max_size}",
        )
    if props_bytes > MAX_PROPERTIES_BYTES:
        return PutResult(
            PutStatus.PROPERTIES_SIZE_EXCEEDED,
            remark=f"the properties take more than {MAX_PROPERTIES_BYTES} bytes",
        )
    if queue_id < 0:
        return PutResult(PutStatus.MESSAGE_ILLEGAL, remark=f"queue id {queue_id} is negative")
    return None


def largest_record_bytes(max_body: int) -> int:
    """The size of a record with the largest body, topic and properties allowed (IPv6 hosts)."""
    return record_size(max_body, 127, MAX_PROPERTIES_BYTES, 0x30)


def classify_offset(offset: int, lo: int, hi: int) -> GetResult | None:
    """The answer for an offset outside `[lo, hi)`, with the corrected next offset; else None.

    RocketMQ's rules: an empty queue answers NO_MESSAGE_IN_QUEUE; below the minimum, the
    minimum; exactly at the end, wait there; past the end, back to 0 if nothing was ever
    deleted, else to the end.
    """
    if hi == 0:
        return GetResult(GetStatus.NO_MESSAGE_IN_QUEUE, 0, lo, hi)
    if offset < lo:
        return GetResult(GetStatus.OFFSET_TOO_SMALL, lo, lo, hi)
    if offset == hi:
        return GetResult(GetStatus.OFFSET_OVERFLOW_ONE, offset, lo, hi)
    if offset > hi:
        return GetResult(GetStatus.OFFSET_OVERFLOW_BADLY, lo if lo == 0 else hi, lo, hi)
    return None
