"""The messages of an in-memory broker: topics of N queues holding `StoredMessage`s (RocketMQ's
CommitLog + ConsumeQueue, as lists), and the schedule of delayed ones.

Delays follow the broker: a DELAY level parks the message in SCHEDULE_TOPIC_XXXX (queue level-1,
its real topic and queue in REAL_TOPIC / REAL_QID) until the clock passes the level's delay;
RocketMQ 5's timer properties (TIMER_DELIVER_MS, TIMER_DELAY_MS, TIMER_DELAY_SEC) park it in the
timer topic until that time. Then it is stored again in its real topic, DELAY and TIMER_* dropped.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field, replace

from rmqkit.common.names import SCHEDULE_TOPIC
from rmqkit.common.properties import Prop, encode_properties
from rmqkit.errors import MessageIllegalError
from rmqkit.protocol.codes import TRANSACTION_TYPE_MASK, SysFlag
from rmqkit.protocol.record import Host, StoredMessage, body_crc, pack_host, record_size
from rmqkit.testing.memory.clock import FakeClock

TIMER_TOPIC = "rmq_sys_wheel_timer"
"""Where RocketMQ 5 keeps timer messages until they are due."""
TIMER_MAX_DELAY_MS = 3 * 86_400_000
"""RocketMQ 5's `timerMaxDelaySec` default: three days; a later timer is refused."""
STORE_HOST: Host = pack_host("127.0.0.1", 10911)
BORN_HOST: Host = pack_host("127.0.0.1", 0)
_TIMER_PROPS = (Prop.TIMER_DELIVER_MS, Prop.TIMER_DELAY_MS, Prop.TIMER_DELAY_SEC)


def copy_message(m: StoredMessage) -> StoredMessage:
    """A copy a consumer may change (its topic, its reconsume times) without touching the store."""
    return replace(m, properties=dict(m.properties), _cache={})


@dataclass(slots=True)
class Draft:
    """A message before it has a place in a queue (RocketMQ `MessageExtBrokerInner`)."""

    topic: str
    queue_id: int
    body: bytes
    properties: dict[str, str]
    flag: int = 0
    sys_flag: int = 0
    born_timestamp: int = 0
    born_host: Host = BORN_HOST
    reconsume_times: int = 0
    prepared_transaction_offset: int = 0


@dataclass(slots=True)
class QueueLog:
    """One queue of a topic: its messages by queue offset (from `min_offset` on)."""

    topic: str
    queue_id: int
    messages: list[StoredMessage] = field(default_factory=list)
    min_offset: int = 0

    @property
    def max_offset(self) -> int:
        """The offset the next message gets (one past the last)."""
        return self.min_offset + len(self.messages)

    def get(self, offset: int) -> StoredMessage | None:
        i = offset - self.min_offset
        return self.messages[i] if 0 <= i < len(self.messages) else None

    def search(self, timestamp_ms: int) -> int:
        """The first offset stored at or after `timestamp_ms` (SEARCH_OFFSET_BY_TIMESTAMP)."""
        for m in self.messages:
            if m.store_timestamp >= timestamp_ms:
                return m.queue_offset
        return self.max_offset


@dataclass(order=True, slots=True)
class Scheduled:
    """A parked message and when it is due."""

    due_ms: int
    seq: int
    stored: StoredMessage = field(compare=False)


class MessageLog:
    """Topics, queues and the delay schedule of one in-memory broker."""

    def __init__(self, clock: FakeClock, delay_levels_ms: list[int], queues_per_topic: int) -> None:
        self.clock = clock
        self.delay_levels_ms = delay_levels_ms
        self.queues_per_topic = queues_per_topic
        self.topics: dict[str, list[QueueLog]] = {}
        self.by_phys: dict[int, StoredMessage] = {}
        self.schedule: list[Scheduled] = []
        self._phys = 0
        self._seq = 0
        self.created: list[str] = []
        """Topics created since the owner last looked (it rebalances consumers on them)."""
        self.creations = 0
        self.born: dict[str, int] = {}
        """Topic -> the value of `creations` when it was created (a consumer subscribed before
        that sees the topic from its first message)."""

    # -- topics -----------------------------------------------------------------------------------

    def default_queues(self, topic: str) -> int:
        """Queues a topic gets when first used: one for a group's retry / DLQ topic and for the
        reply topic (as the broker creates them), `queues_per_topic` otherwise."""
        if topic.startswith(("%RETRY%", "%DLQ%")) or topic.endswith("_REPLY_TOPIC"):
            return 1
        if topic == SCHEDULE_TOPIC:
            return len(self.delay_levels_ms)
        return self.queues_per_topic

    def ensure_topic(self, topic: str, queues: int | None = None) -> list[QueueLog]:
        found = self.topics.get(topic)
        if found is None:
            n = queues or self.default_queues(topic)
            found = self.topics[topic] = [QueueLog(topic, i) for i in range(n)]
            self.created.append(topic)
            self.creations += 1
            self.born[topic] = self.creations
        return found

    def queue(self, topic: str, queue_id: int) -> QueueLog:
        queues = self.ensure_topic(topic)
        return queues[min(max(queue_id, 0), len(queues) - 1)]

    # -- storing ----------------------------------------------------------------------------------

    def append(self, d: Draft) -> StoredMessage:
        """Store `d` at the end of its queue; no delay routing."""
        q = self.queue(d.topic, d.queue_id)
        props = encode_properties(d.properties)
        size = record_size(len(d.body), len(d.topic), len(props.encode()))
        m = StoredMessage(
            topic=d.topic, body=d.body, properties=dict(d.properties), queue_id=q.queue_id,
            flag=d.flag, queue_offset=q.max_offset, commit_log_offset=self._phys,
            sys_flag=d.sys_flag, born_timestamp=d.born_timestamp, born_host=d.born_host,
            store_timestamp=self.clock.now_ms(), store_host=STORE_HOST,
            reconsume_times=d.reconsume_times,
            prepared_transaction_offset=d.prepared_transaction_offset, body_crc=body_crc(d.body),
            store_size=size,
        )  # fmt: skip
        self._phys += size
        q.messages.append(m)
        self.by_phys[m.commit_log_offset] = m
        return m

    def put(self, d: Draft) -> StoredMessage:
        """Store `d`, parked in the schedule or timer topic when it asks for a delay.

        Raises:
            MessageIllegalError: a DELAY or TIMER_* property that is not a number, or a timer
                more than three days ahead.
        """
        ttype = d.sys_flag & TRANSACTION_TYPE_MASK
        if ttype not in (0, SysFlag.TRANSACTION_COMMIT):
            return self.append(d)  # half messages wait for their transaction, not a timer
        now = self.clock.now_ms()
        timer_due = self._timer_due(d.properties, now)
        if timer_due is not None:
            if timer_due <= now:
                for k in _TIMER_PROPS:
                    d.properties.pop(k, None)
                return self.append(d)
            return self._park(d, TIMER_TOPIC, 0, timer_due)
        level = self._delay_level(d.properties)
        if level <= 0:
            return self.append(d)
        level = min(level, len(self.delay_levels_ms))
        d.properties[Prop.DELAY_TIME_LEVEL] = str(level)
        return self._park(d, SCHEDULE_TOPIC, level - 1, now + self.delay_levels_ms[level - 1])

    @staticmethod
    def _delay_level(props: dict[str, str]) -> int:
        raw = props.get(Prop.DELAY_TIME_LEVEL)
        if raw is None:
            return 0
        try:
            return int(raw)
        except ValueError:
            raise MessageIllegalError(
                f"the DELAY property {raw!r} is not a delay level", request="send"
            ) from None

    @staticmethod
    def _timer_due(props: dict[str, str], now_ms: int) -> int | None:
        for key, scale, absolute in (
            (Prop.TIMER_DELIVER_MS, 1, True), (Prop.TIMER_DELAY_MS, 1, False),
            (Prop.TIMER_DELAY_SEC, 1000, False),
        ):  # fmt: skip
            raw = props.get(key)
            if raw is None:
                continue
            try:
                value = int(raw) * scale
            except ValueError:
                raise MessageIllegalError(
                    f"the {key} property {raw!r} is not a number", request="send"
                ) from None
            due = value if absolute else now_ms + value
            if due - now_ms > TIMER_MAX_DELAY_MS:
                raise MessageIllegalError(
                    f"{key}={raw}: a timer message is due at most 3 days ahead", request="send"
                )
            return due
        return None

    def _park(self, d: Draft, topic: str, queue_id: int, due_ms: int) -> StoredMessage:
        props = dict(d.properties)
        props[Prop.REAL_TOPIC] = d.topic
        props[Prop.REAL_QUEUE_ID] = str(self.queue(d.topic, d.queue_id).queue_id)
        parked = self.append(replace(d, topic=topic, queue_id=queue_id, properties=props))
        self._seq += 1
        heapq.heappush(self.schedule, Scheduled(due_ms, self._seq, parked))
        return parked

    def next_due_ms(self) -> int | None:
        """When the earliest parked message is due, None when none is parked."""
        return self.schedule[0].due_ms if self.schedule else None

    def release_due(self) -> list[StoredMessage]:
        """Store every parked message that is due in its real topic; returns them."""
        now = self.clock.now_ms()
        out = []
        while self.schedule and self.schedule[0].due_ms <= now:
            parked = heapq.heappop(self.schedule).stored
            props = dict(parked.properties)
            topic = props.pop(Prop.REAL_TOPIC)
            qid = int(props.pop(Prop.REAL_QUEUE_ID, "0"))
            props.pop(Prop.DELAY_TIME_LEVEL, None)
            for k in _TIMER_PROPS:
                props.pop(k, None)
            out.append(self.append(Draft(
                topic, qid, parked.body, props, parked.flag, parked.sys_flag,
                parked.born_timestamp, parked.born_host, parked.reconsume_times,
                parked.prepared_transaction_offset,
            )))  # fmt: skip
        return out

    def parked(self, real_topic: str | None = None) -> list[StoredMessage]:
        """Messages waiting for their delay, earliest due first (optionally of one topic)."""
        return [
            copy_message(s.stored)
            for s in sorted(self.schedule)
            if real_topic is None or s.stored.properties.get(Prop.REAL_TOPIC) == real_topic
        ]

    def expire(self, topic: str) -> None:
        """Delete every message of `topic` as retention would: each queue's min offset moves to
        its max offset, and consumers behind it jump there (PULL_OFFSET_MOVED)."""
        for q in self.topics.get(topic, []):
            for m in q.messages:
                self.by_phys.pop(m.commit_log_offset, None)
            q.min_offset = q.max_offset
            q.messages.clear()
