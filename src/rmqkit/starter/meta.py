"""`MessageMeta`: everything about a delivered message except its payload, injectable into a
handler next to the typed payload (what rocketmq-spring's users reach for `MessageExt` to get)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from rmqkit.common.properties import SYSTEM_KEYS, Prop
from rmqkit.protocol.record import StoredMessage

# System properties that are not the sender's own: kept out of `MessageMeta.user_properties`.
_SYSTEM = SYSTEM_KEYS | {"traceparent", "tracestate", "baggage"}
IDEMPOTENCY_KEY = "RMQKIT_IDEMPOTENCY_KEY"
"""The user property that carries a send's idempotency key."""
FLOW_PROPERTY = "RMQKIT_TX_FLOW"
"""The user property naming the transactional flow a half message belongs to."""
ERROR_PROPERTY = "RMQKIT_ERROR"
"""Set on a message dead-lettered by the starter (a payload that did not decode, GiveUp)."""
_STARTER = frozenset({IDEMPOTENCY_KEY, FLOW_PROPERTY, ERROR_PROPERTY})


@dataclass(frozen=True, slots=True)
class MessageMeta:
    """A delivered message's metadata.

    Attributes:
        msg_id: the client message id (UNIQ_KEY), stable across retries.
        offset_msg_id: the broker's id (store host + CommitLog offset).
        topic: the topic it was sent to (the real one, also for retries).
        tags: its tag, or None.
        keys: its business keys.
        idempotency_key: the key the sender attached, or None.
        reconsume_times: how many times it was delivered before (0 on the first delivery).
        born_timestamp_ms / store_timestamp_ms: when it was sent / stored (epoch ms).
        broker_name / queue_id / queue_offset: where it sits.
        properties: all properties, system ones included.
        user_properties: the sender's own properties only.
        group: the consumer group delivering it.
    """

    msg_id: str
    offset_msg_id: str
    topic: str
    tags: str | None
    keys: tuple[str, ...]
    idempotency_key: str | None
    reconsume_times: int
    born_timestamp_ms: int
    store_timestamp_ms: int
    broker_name: str
    queue_id: int
    queue_offset: int
    group: str
    properties: Mapping[str, str] = field(repr=False)
    user_properties: Mapping[str, str] = field(repr=False)

    @classmethod
    def of(cls, m: StoredMessage, group: str, broker_name: str = "") -> MessageMeta:
        """The metadata of a stored message as a consumer of `group` received it."""
        props = m.properties
        user = {k: v for k, v in props.items() if k not in _SYSTEM and k not in _STARTER}
        return cls(
            msg_id=m.msg_id,
            offset_msg_id=m.offset_msg_id,
            topic=props.get(Prop.RETRY_TOPIC) or m.topic,
            tags=m.tags,
            keys=tuple(m.keys),
            idempotency_key=props.get(IDEMPOTENCY_KEY),
            reconsume_times=m.reconsume_times,
            born_timestamp_ms=m.born_timestamp,
            store_timestamp_ms=m.store_timestamp,
            broker_name=broker_name,
            queue_id=m.queue_id,
            queue_offset=m.queue_offset,
            group=group,
            properties=MappingProxyType(dict(props)),
            user_properties=MappingProxyType(user),
        )
