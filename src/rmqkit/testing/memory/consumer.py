"""`MemoryConsumer`: a push consumer of an in-memory broker, with `rmqkit.client.PushConsumer`'s
constructor and its consume semantics (RocketMQ `DefaultMQPushConsumer`).

CONCURRENTLY: each queue's matching messages are cut into batches for `consume_concurrency`
workers; failed messages go back to the broker (`%RETRY%<group>`, or `%DLQ%<group>` past
`max_reconsume_times` or at level -1) in CLUSTERING and are dropped in BROADCASTING. ORDERLY: one
batch of a queue at a time, in offset order; a failure suspends the queue for
`suspend_current_queue_time_ms` on the fake clock and hands the same messages again, until they
are out of attempts and dead-lettered. The committed offset of a queue is always the smallest one
still being consumed, so a restart redelivers and never skips.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from rmqkit.client.allocate import Allocate, allocate_averagely
from rmqkit.client.message import MessageQueue
from rmqkit.client.push_consumer import (
    ConsumeContext,
    ConsumeFrom,
    ConsumeMode,
    ConsumeResult,
    Handler,
    MessageModel,
    failed_messages,
)
from rmqkit.common.lifecycle import AsyncLifecycle
from rmqkit.common.names import RETRY_GROUP_TOPIC_PREFIX, retry_topic
from rmqkit.common.properties import Prop
from rmqkit.common.sql92 import Expression, SqlParseError, compile_expression
from rmqkit.common.subscription import EXPRESSION_SQL92, SubscriptionData
from rmqkit.errors import ConfigurationError, SubscriptionParseFailedError
from rmqkit.protocol.record import StoredMessage
from rmqkit.testing.memory.store import QueueLog, copy_message

if TYPE_CHECKING:
    from rmqkit.testing.memory.broker import MemoryBroker

log = logging.getLogger("rmqkit.testing.memory")
_client_seq = itertools.count(1)


def client_id(instance_name: str) -> str:
    """A client id unique in this process, shaped as RocketMQ's `ip@instance`."""
    return f"127.0.0.1@{instance_name}#{next(_client_seq)}"


@dataclass(slots=True)
class Subscription:
    """One subscribed topic: the tag expression, or a compiled SQL92 filter."""

    data: SubscriptionData
    sql: Expression | None = None

    def matches(self, m: StoredMessage) -> bool:
        if self.sql is not None:
            return self.sql.evaluate(m.properties)
        return self.data.matches_tag(m.tags)


@dataclass(slots=True, eq=False)
class ProcessQueue:
    """A consumer's progress through one queue."""

    mq: MessageQueue
    next_offset: int
    inflight: dict[int, StoredMessage] = field(default_factory=dict)
    """Queue offset -> a message handed to the handler and not yet done."""
    dropped: bool = False
    busy: bool = False
    """ORDERLY: a batch of this queue is with the handler."""
    retry: list[StoredMessage] | None = None
    """ORDERLY: the failed batch, handed again once the suspension is over."""
    suspended_until_ms: int = 0

    def commit_offset(self) -> int:
        return min(self.inflight) if self.inflight else self.next_offset


class MemoryConsumer(AsyncLifecycle):
    """Consumes from a `MemoryBroker`; the arguments are `PushConsumer`'s (see there).

    Options a memory consumer has no use for (pull batch sizes, thresholds, rebalance and
    persist intervals, offset_store_dir, ...) are accepted and ignored.
    """

    def __init__(
        self,
        broker: MemoryBroker,
        group: str,
        *,
        message_model: MessageModel = "CLUSTERING",
        consume_mode: ConsumeMode = "CONCURRENTLY",
        suspend_current_queue_time_ms: int = 1_000,
        consume_from_where: ConsumeFrom = "CONSUME_FROM_LAST_OFFSET",
        consume_timestamp_ms: int | None = None,
        allocate: Allocate = allocate_averagely,
        consume_concurrency: int = 20,
        consume_message_batch_max_size: int = 1,
        max_reconsume_times: int = 16,
        consume_timeout_s: float = 15 * 60,
        await_termination_ms: int = 5_000,
        instance_name: str = "DEFAULT",
        **ignored: Any,
    ) -> None:
        if message_model not in ("CLUSTERING", "BROADCASTING"):
            raise ConfigurationError(f"message_model {message_model!r}")
        if consume_mode not in ("CONCURRENTLY", "ORDERLY"):
            raise ConfigurationError(f"consume_mode {consume_mode!r}")
        if ignored:
            log.debug("memory consumer %s ignores options %s", group, sorted(ignored))
        self.broker = broker
        self.group = group
        self.client_id = client_id(instance_name)
        self.message_model = message_model
        self.orderly = consume_mode == "ORDERLY"
        self.suspend_ms = suspend_current_queue_time_ms
        self.consume_from_where = consume_from_where
        self.consume_timestamp_ms = consume_timestamp_ms
        self.allocate = allocate
        self.concurrency = max(1, consume_concurrency)
        self.batch_max = max(1, consume_message_batch_max_size)
        self.max_reconsume_times = max_reconsume_times
        self.consume_timeout_s = consume_timeout_s
        self.await_termination_s = await_termination_ms / 1000
        self.subscriptions: dict[str, Subscription] = {}
        self.handler: Handler | None = None
        self.process_queues: dict[MessageQueue, ProcessQueue] = {}
        self.local_offsets: dict[MessageQueue, int] = {}
        """BROADCASTING: this consumer's own offsets (RocketMQ keeps them in a local file)."""
        self.pending = 0
        """Batches handed to the workers and not finished."""
        self._seen_creations = 0
        self.running = False
        self._work: asyncio.Queue[tuple[ProcessQueue, list[StoredMessage]]] | None = None
        self._workers: list[asyncio.Task[None]] = []

    def __repr__(self) -> str:
        return f"MemoryConsumer({self.group!r}, {self.client_id!r})"

    @property
    def clustering(self) -> bool:
        return self.message_model == "CLUSTERING"

    # -- set-up -----------------------------------------------------------------------------------

    def subscribe(self, topic: str, expression: str = "*", expression_type: str = "TAG") -> None:
        """Receive `topic`'s messages matching a tag expression (`*`, `a || b`) or, with
        `expression_type="SQL92"`, a SQL92 filter on their properties.

        Raises:
            SubscriptionParseFailedError: the SQL92 expression does not parse.
        """
        data = SubscriptionData.build(topic, expression, expression_type)
        sql = None
        if data.expression_type == EXPRESSION_SQL92:
            try:
                sql = compile_expression(data.sub_string)
            except SqlParseError as exc:
                raise SubscriptionParseFailedError(
                    f"{self.group}: SQL92 filter {data.sub_string!r} of {topic}: {exc}",
                    request="subscribe",
                ) from exc
        self.subscriptions[topic] = Subscription(data, sql)

    def register(self, handler: Handler) -> None:
        """The async function called with each batch."""
        self.handler = handler

    # -- lifecycle --------------------------------------------------------------------------------

    async def start(self) -> None:
        if self.running:
            return
        if self.handler is None or not self.subscriptions:
            raise ConfigurationError(
                f"consumer {self.group}: register a handler and subscribe to a topic before start()"
            )
        if self.clustering:
            self.subscriptions.setdefault(
                retry_topic(self.group),
                Subscription(SubscriptionData.build(retry_topic(self.group), "*")),
            )
        if self.consume_timestamp_ms is None:
            self.consume_timestamp_ms = self.broker.clock.now_ms() - 30 * 60_000
        self._seen_creations = self.broker.store.creations
        self._work = asyncio.Queue()
        loop = asyncio.get_running_loop()
        self._workers = [loop.create_task(self._worker()) for _ in range(self.concurrency)]
        self.running = True
        self.broker.join(self)

    async def stop(self) -> None:
        """Stop taking messages, let handed batches finish (up to `await_termination_ms`),
        commit, and leave the group (its queues go to the other members)."""
        if not self.running:
            return
        self.running = False
        if self._work is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.await_termination_s):
                    await self._work.join()
        for t in self._workers:
            t.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        self._workers, self._work, self.pending = [], None, 0
        for pq in self.process_queues.values():
            self._commit(pq)
            pq.dropped = True
        self.process_queues.clear()
        self.broker.leave(self)

    # -- queues -----------------------------------------------------------------------------------

    def assign(self, topic: str, mine: set[MessageQueue]) -> None:
        """Take the queues of `topic` this consumer now owns; release the others."""
        for mq in [q for q in self.process_queues if q.topic == topic and q not in mine]:
            pq = self.process_queues.pop(mq)
            self._commit(pq)
            pq.dropped = True
        for mq in sorted(mine - set(self.process_queues), key=lambda q: q.queue_id):
            start = self._start_offset(mq)
            self.process_queues[mq] = ProcessQueue(mq, start)
            log.debug("%s (%s): took %s from offset %d", self.group, self.client_id, mq, start)

    def _start_offset(self, mq: MessageQueue) -> int:
        q = self.broker.store.queue(mq.topic, mq.queue_id)
        if self.clustering:
            off = self.broker.committed.get(self.group, {}).get((mq.topic, mq.queue_id))
            if off is not None:
                return off
            # The broker answers 0 for a group's first look at a queue that still holds its first
            # message, so a new group does not miss what was sent just before it started.
            if q.min_offset <= 0:
                return 0
        elif mq in self.local_offsets:
            return self.local_offsets[mq]
        if self.consume_from_where == "CONSUME_FROM_FIRST_OFFSET":
            return q.min_offset
        if self.broker.store.born.get(mq.topic, 0) > self._seen_creations:
            # The topic appeared after this consumer subscribed: it reads it from the start (a
            # real consumer would, had its route refresh beaten the first send).
            return q.min_offset
        is_retry = mq.topic.startswith(RETRY_GROUP_TOPIC_PREFIX)
        if self.consume_from_where == "CONSUME_FROM_TIMESTAMP" and not is_retry:
            return q.search(self.consume_timestamp_ms or 0)
        return q.min_offset if is_retry else q.max_offset

    def _commit(self, pq: ProcessQueue) -> None:
        if pq.dropped:
            return
        if self.clustering:
            table = self.broker.committed.setdefault(self.group, {})
            table[(pq.mq.topic, pq.mq.queue_id)] = pq.commit_offset()
        else:
            self.local_offsets[pq.mq] = pq.commit_offset()

    def resume_at_ms(self) -> int | None:
        """ORDERLY: when the first suspended queue may be handed its batch again."""
        times = [pq.suspended_until_ms for pq in self.process_queues.values() if pq.retry]
        return min(times, default=None)

    # -- pulling ----------------------------------------------------------------------------------

    def fill(self, now_ms: int) -> int:
        """Hand every deliverable message to the workers; returns the number of batches."""
        if not self.running or self._work is None:
            return 0
        n = 0
        for pq in list(self.process_queues.values()):
            q = self.broker.store.queue(pq.mq.topic, pq.mq.queue_id)
            if pq.next_offset < q.min_offset:  # PULL_OFFSET_MOVED: retention deleted them
                pq.next_offset = q.min_offset
            if self.orderly:
                if pq.busy or (pq.retry is not None and now_ms < pq.suspended_until_ms):
                    continue
                batch, pq.retry = pq.retry or self._pull(pq, q, self.batch_max), None
                if batch:
                    pq.busy = True
                    self._submit(pq, batch)
                    n += 1
            else:
                msgs = self._pull(pq, q, None)
                for i in range(0, len(msgs), self.batch_max):
                    self._submit(pq, msgs[i : i + self.batch_max])
                    n += 1
            self._commit(pq)
        return n

    def _pull(self, pq: ProcessQueue, q: QueueLog, limit: int | None) -> list[StoredMessage]:
        sub = self.subscriptions.get(pq.mq.topic)
        out: list[StoredMessage] = []
        while pq.next_offset < q.max_offset and (limit is None or len(out) < limit):
            m = q.get(pq.next_offset)
            pq.next_offset += 1
            if m is not None and sub is not None and sub.matches(m):
                c = copy_message(m)
                pq.inflight[m.queue_offset] = c
                out.append(c)
        return out

    def _submit(self, pq: ProcessQueue, batch: list[StoredMessage]) -> None:
        assert self._work is not None
        self.pending += 1
        self._work.put_nowait((pq, batch))

    # -- consuming --------------------------------------------------------------------------------

    async def _worker(self) -> None:
        assert self._work is not None
        work = self._work
        while True:
            pq, batch = await work.get()
            try:
                if self.orderly:
                    await self._consume_orderly(pq, batch)
                else:
                    await self._consume(pq, batch)
            except Exception:
                log.exception("%s: consuming %s failed", self.group, [m.msg_id for m in batch])
            finally:
                work.task_done()
                self.pending = max(0, self.pending - 1)
                self.broker.batch_done()

    async def _run_handler(
        self, mq: MessageQueue, batch: list[StoredMessage]
    ) -> list[tuple[StoredMessage, int]]:
        """Call the handler with one batch; the messages that failed, with their delay levels
        (as `PushConsumer._run_handler`)."""
        assert self.handler is not None
        for m in batch:
            real = m.properties.get(Prop.RETRY_TOPIC)
            if real:
                m.topic = real
        ctx = ConsumeContext(mq, len(batch) - 1)
        try:
            async with asyncio.timeout(self.consume_timeout_s):
                result = await self.handler(batch, ctx) or ConsumeResult.SUCCESS
        except Exception:
            log.exception("%s: handler failed on %s", self.group, [m.msg_id for m in batch])
            result = ConsumeResult.RECONSUME_LATER
        return failed_messages(batch, result, ctx)

    def _done(self, pq: ProcessQueue, batch: list[StoredMessage]) -> None:
        for m in batch:
            pq.inflight.pop(m.queue_offset, None)
        self._commit(pq)

    async def _consume(self, pq: ProcessQueue, batch: list[StoredMessage]) -> None:
        failed = await self._run_handler(pq.mq, batch)
        if failed and self.clustering:
            for m, level in failed:
                self.broker.send_back(self, m, level)
        elif failed:
            log.warning("%s (broadcasting): dropping %d failed messages", self.group, len(failed))
        self._done(pq, batch)

    async def _consume_orderly(self, pq: ProcessQueue, batch: list[StoredMessage]) -> None:
        try:
            failed = await self._run_handler(pq.mq, batch)
            if failed and all(level < 0 for _, level in failed):
                for m, _ in failed:  # the handler gave up on them: dead-letter, go on
                    self.broker.send_back(self, m, -1)
            elif failed:
                for m in batch:
                    m.reconsume_times += 1
                if all(m.reconsume_times > self.max_reconsume_times for m in batch):
                    for m in batch:  # out of attempts: dead-letter them and move on
                        self.broker.send_back(self, m, -1)
                else:  # suspend the queue, then hand the same messages again, in order
                    pq.retry = batch
                    pq.suspended_until_ms = self.broker.clock.now_ms() + self.suspend_ms
                    return
            self._done(pq, batch)
        finally:
            pq.busy = False
