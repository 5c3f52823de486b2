"""`MemoryBroker`: RocketMQ's broker semantics in process, on a fake clock, for tests.

It keeps topics of N queues of `StoredMessage`s, delays (levels and RocketMQ 5 timers), the retry
and dead-letter topics of consumer groups (as CONSUMER_SEND_MSG_BACK stores them), half messages
and their check-backs, request-reply, and committed offsets per group. Producers, transaction
producers and consumers made by `MemoryTransport` talk to it directly.

Delivery is driven two ways: started consumers are fed in the background as messages arrive (so
code that just awaits works), and `await broker.drain()` / `await broker.advance(seconds)` let a
test wait until everything deliverable has been handled, deterministically and without sleeping.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from rmqkit.client.message import MessageQueue
from rmqkit.client.transaction import TransactionState
from rmqkit.common.names import dlq_topic, retry_topic
from rmqkit.common.properties import REPLY_MESSAGE_FLAG, Prop
from rmqkit.errors import SystemError_
from rmqkit.protocol.record import StoredMessage
from rmqkit.starter.outcomes import DEFAULT_DELAY_LEVELS_S
from rmqkit.testing.memory.clock import FakeClock
from rmqkit.testing.memory.producer import MemoryProducer, MemoryTransactionProducer
from rmqkit.testing.memory.requests import ReplyWaiters
from rmqkit.testing.memory.store import Draft, MessageLog, copy_message
from rmqkit.testing.memory.transactions import TransactionTable

if TYPE_CHECKING:
    from rmqkit.testing.memory.consumer import MemoryConsumer

log = logging.getLogger("rmqkit.testing.memory")
DEFAULT_RETRY_MAX_TIMES = 16
"""The subscription group's `retryMaxTimes` when the consumer does not say."""


class MemoryBroker:
    """One in-memory broker (and its cluster) that producers and consumers share.

    Args:
        clock: the fake clock (default: a new one at the current time).
        queues_per_topic: queues a topic gets when first used (retry, DLQ and reply topics get 1).
        delay_levels_s: the delay of each level, 1-based (RocketMQ's `messageDelayLevel`).
        broker_name / cluster_name: as a real broker reports them (the cluster names the reply
            topic and the CLUSTER property of every message).
        transaction_timeout_s: a half message this old is checked (`transactionTimeOut`).
        transaction_check_interval_s: the fake-clock period of check rounds.
        transaction_check_max: checks before an unresolved half message is discarded.
    """

    def __init__(
        self,
        clock: FakeClock | None = None,
        *,
        queues_per_topic: int = 4,
        delay_levels_s: Sequence[float] = DEFAULT_DELAY_LEVELS_S,
        broker_name: str = "broker-a",
        cluster_name: str = "DefaultCluster",
        transaction_timeout_s: float = 6.0,
        transaction_check_interval_s: float = 60.0,
        transaction_check_max: int = 15,
    ) -> None:
        if queues_per_topic < 1 or not delay_levels_s:
            raise ValueError("a broker needs at least one queue per topic and one delay level")
        self.clock = clock or FakeClock()
        self.broker_name = broker_name
        self.cluster_name = cluster_name
        self.store = MessageLog(
            self.clock, [round(s * 1000) for s in delay_levels_s], queues_per_topic
        )
        self.transactions = TransactionTable(
            self.store, timeout_ms=round(transaction_timeout_s * 1000),
            check_max=transaction_check_max,
        )  # fmt: skip
        self.check_interval_ms = round(transaction_check_interval_s * 1000)
        self.replies = ReplyWaiters()
        self.committed: dict[str, dict[tuple[str, int], int]] = {}
        """Group -> (topic, queue id) -> committed offset (CLUSTERING groups)."""
        self.members: list[MemoryConsumer] = []
        self.producers: dict[str, MemoryProducer] = {}
        """Client id -> started producer."""
        self._next_check_ms = self.clock.now_ms() + self.check_interval_ms
        self._check_task: asyncio.Task[Any] | None = None
        self._rebalance_needed = False
        self._pump_scheduled = False
        self._rounds = 0
        self._changed: asyncio.Event | None = None
        self.clock.subscribe(self.wakeup)

    def __repr__(self) -> str:
        return f"MemoryBroker({self.broker_name!r}, {self.clock!r})"

    # -- storing (producers) ----------------------------------------------------------------------

    def accept(self, d: Draft, uniq: str) -> StoredMessage:
        """Store a sent message: routed to its request when it is a reply, held when it is a
        half message, parked when it is delayed, else appended to its queue."""
        props = d.properties
        if props.get(Prop.MESSAGE_TYPE) == REPLY_MESSAGE_FLAG:
            m = self._reply(d)
        elif props.get(Prop.TRANSACTION_PREPARED) == "true":
            m = self.transactions.prepare(d, uniq)
        else:
            m = self.store.put(d)
        self.wakeup()
        return m

    def _reply(self, d: Draft) -> StoredMessage:
        client = d.properties.get(Prop.MESSAGE_REPLY_TO_CLIENT)
        if not client:
            raise SystemError_(
                f"reply message properties[{Prop.MESSAGE_REPLY_TO_CLIENT}] is null",
                request="send reply",
            )
        if client not in self.producers:
            raise SystemError_(
                f"push reply message fail, channel of <{client}> not found.", request="send reply"
            )
        stored = self.store.append(d)  # storeReplyMessageEnable: also kept in the reply topic
        pushed = copy_message(stored)
        now = str(self.clock.now_ms())
        pushed.properties[Prop.PUSH_REPLY_TIME] = now
        pushed.properties[Prop.REPLY_MESSAGE_ARRIVE_TIME] = now
        self.replies.complete(pushed)
        return stored

    def end_transaction(self, uniq: str, state: TransactionState) -> None:
        """END_TRANSACTION: commit (visible now), roll back (gone) or UNKNOWN (stays half)."""
        if self.transactions.end(uniq, state) is not None:
            self.wakeup()

    def producer_started(self, p: MemoryProducer) -> None:
        self.producers[p.client_id] = p

    def producer_stopped(self, p: MemoryProducer) -> None:
        self.producers.pop(p.client_id, None)

    # -- consumers --------------------------------------------------------------------------------

    def join(self, c: MemoryConsumer) -> None:
        """A consumer started: the group's queues are shared again."""
        if c not in self.members:
            self.members.append(c)
        self._rebalance_needed = True
        self.wakeup()

    def leave(self, c: MemoryConsumer) -> None:
        if c in self.members:
            self.members.remove(c)
        self._rebalance_needed = True
        self.wakeup()

    def batch_done(self) -> None:
        self._notify()
        self.wakeup()

    def send_back(self, c: MemoryConsumer, m: StoredMessage, delay_level: int) -> None:
        """CONSUMER_SEND_MSG_BACK: store `m` again in the group's retry topic with a delay level
        (3 + reconsume times when 0), or in its DLQ at level -1 or past the maximum."""
        stored = self.store.by_phys.get(m.commit_log_offset)
        if stored is None:
            log.warning("%s: %s is gone from the store; not retried", c.group, m.msg_id)
            return
        props = dict(stored.properties)
        props.setdefault(Prop.RETRY_TOPIC, stored.topic)
        props.setdefault(Prop.ORIGIN_MESSAGE_ID, m.msg_id)
        props.pop(Prop.DELAY_TIME_LEVEL, None)
        props.pop(Prop.WAIT_STORE_MSG_OK, None)
        max_times = c.max_reconsume_times
        if max_times < 0:
            max_times = int(props.get(Prop.MAX_RECONSUME_TIMES) or DEFAULT_RETRY_MAX_TIMES)
        if stored.reconsume_times >= max_times or delay_level < 0:
            topic = dlq_topic(c.group)
            props[Prop.DLQ_ORIGIN_TOPIC] = props[Prop.RETRY_TOPIC]
            props[Prop.DLQ_ORIGIN_MESSAGE_ID] = props[Prop.ORIGIN_MESSAGE_ID]
        else:
            topic = retry_topic(c.group)
            props[Prop.DELAY_TIME_LEVEL] = str(delay_level or 3 + stored.reconsume_times)
        self.store.put(Draft(
            topic, 0, stored.body, props, stored.flag, stored.sys_flag, stored.born_timestamp,
            stored.born_host, stored.reconsume_times + 1,
        ))  # fmt: skip
        self.wakeup()

    def _rebalance(self) -> None:
        """Share every subscribed topic's queues among each group's members (as each member's
        allocation strategy computes it; BROADCASTING members take them all)."""
        self._rebalance_needed = False
        for c in self.members:
            if not c.running:
                continue  # stopping: it keeps its queues until it has left
            cids = [x.client_id for x in self.members if x.group == c.group and x.clustering]
            for topic in list(c.subscriptions):
                queues = self.store.topics.get(topic, [])
                mqs = [MessageQueue(topic, self.broker_name, q.queue_id) for q in queues]
                mine = mqs if not c.clustering else c.allocate(c.client_id, mqs, cids)
                c.assign(topic, set(mine))

    # -- driving ----------------------------------------------------------------------------------

    def wakeup(self) -> None:
        """Something changed: deliver soon (on the running loop, if any)."""
        if self._pump_scheduled:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # no loop (a clock moved in sync code): the next drain delivers
        self._pump_scheduled = True
        loop.call_soon(self._pump)

    def _pump(self) -> None:
        self._pump_scheduled = False
        try:
            self._step()
        except Exception:
            log.exception("in-memory delivery failed")

    def _step(self) -> int:
        """Release what is due and hand every deliverable message to its consumer; returns the
        number of batches (and check rounds) started."""
        now = self.clock.now_ms()
        self.store.release_due()
        self.replies.expire(now)
        n = self._maybe_check(now)
        if self.store.created:
            self.store.created.clear()
            self._rebalance_needed = True
        if self._rebalance_needed:
            self._rebalance()
        for c in list(self.members):
            n += c.fill(now)
        if n:
            self._rounds += 1
        return n

    def _maybe_check(self, now: int) -> int:
        if self._check_task is not None:
            return 0
        due = now >= self._next_check_ms
        while self._next_check_ms <= now:
            self._next_check_ms += self.check_interval_ms
        if not due or not self.transactions.half:
            return 0
        self._check_task = asyncio.get_running_loop().create_task(self._check_round(False))
        return 1

    async def _check_round(self, force: bool) -> dict[str, TransactionState]:
        out: dict[str, TransactionState] = {}
        try:
            for uniq, h in self.transactions.to_check(self.clock.now_ms(), force=force):
                producer = self._transaction_producer(h.group)
                if producer is None:
                    log.info("no producer of %s online to check half message %s", h.group, uniq)
                    continue
                try:
                    state = producer.checker(h.for_check())
                    if inspect.isawaitable(state):
                        state = await state
                except Exception:
                    log.exception("transaction check of %s failed; answering UNKNOWN", uniq)
                    state = TransactionState.UNKNOWN
                if not isinstance(state, TransactionState):
                    log.error("check of %s answered %r, not a TransactionState", uniq, state)
                    state = TransactionState.UNKNOWN
                out[uniq] = state
                self.end_transaction(uniq, state)
        finally:
            if not force:
                self._check_task = None
            self._notify()
            self.wakeup()
        return out

    def _transaction_producer(self, group: str) -> MemoryTransactionProducer | None:
        for p in self.producers.values():
            if p.group == group and isinstance(p, MemoryTransactionProducer):
                return p
        return None

    async def check_transactions(self) -> dict[str, TransactionState]:
        """Run a check round now: every unresolved half message, whatever its age, is counted
        and checked with a started transaction producer of its group, and the answer applied.

        Returns:
            Message id -> the answer, for each half message a producer answered.
        """
        return await self._check_round(True)

    def _idle(self) -> bool:
        return self._check_task is None and all(c.pending == 0 for c in self.members)

    def _notify(self) -> None:
        if self._changed is not None:
            self._changed.set()

    async def _wait_change(self) -> None:
        if self._changed is None:
            self._changed = asyncio.Event()
        self._changed.clear()
        if not self._idle():
            await self._changed.wait()

    async def drain(self, *, max_rounds: int = 10_000, timeout_s: float = 30.0) -> None:
        """Deliver everything deliverable now, retries and delayed messages that are due
        included, and wait until every handler call has finished and nothing new came of them.

        Args:
            max_rounds: give up after this many delivery rounds (a listener that sends a new
                message for every message it receives never settles).
            timeout_s: real seconds to wait for handlers (one that never returns would hang).

        Raises:
            RuntimeError: still delivering after `max_rounds`.
            TimeoutError: handlers still running after `timeout_s`.
        """
        start = self._rounds
        try:
            async with asyncio.timeout(timeout_s):
                while True:
                    self._step()
                    if self._rounds - start > max_rounds:
                        raise RuntimeError(
                            f"drain: still delivering after {max_rounds} rounds (does a listener"
                            " send a message for every message it receives?)"
                        )
                    if self._idle():
                        for _ in range(3):  # let callbacks the handlers scheduled run
                            await asyncio.sleep(0)
                        if self._step() == 0 and self._idle():
                            return
                        continue
                    await self._wait_change()
        except TimeoutError:
            busy = [f"{c.group}: {c.pending} batch(es)" for c in self.members if c.pending]
            what = ", ".join(busy) or "a transaction check"
            raise TimeoutError(
                f"drain: handlers still running after {timeout_s} s ({what}); is a listener "
                "waiting for something that never comes?"
            ) from None

    def _next_event_ms(self) -> int | None:
        now = self.clock.now_ms()
        times = [self.store.next_due_ms(), self.replies.next_deadline_ms()]
        if self.transactions.half:
            times.append(self._next_check_ms)
        times += [c.resume_at_ms() for c in self.members if c.running]
        return min((t for t in times if t is not None and t > now), default=None)

    async def advance(self, seconds: float) -> None:
        """Move the fake clock forward by `seconds`, stopping at every event on the way (a
        delayed message or a retry falling due, an orderly queue's suspension ending, a
        transaction check round, a request deadline) to deliver what it brings.

        Raises:
            ValueError: for a negative amount.
        """
        if seconds < 0:
            raise ValueError(f"a clock cannot go back ({seconds} s)")
        target = self.clock.now_ms() + round(seconds * 1000)
        await self.drain()
        while (nxt := self._next_event_ms()) is not None and nxt <= target:
            self.clock.set_ms(nxt)
            await self.drain()
        self.clock.set_ms(target)
        await self.drain()

    async def close(self) -> None:
        """Stop every consumer and producer still running on this broker."""
        for c in list(self.members):
            await c.stop()
        for p in list(self.producers.values()):
            await p.stop()
        if self._check_task is not None:
            self._check_task.cancel()
            await asyncio.gather(self._check_task, return_exceptions=True)
            self._check_task = None
        self.clock.unsubscribe(self.wakeup)

    # -- inspection -------------------------------------------------------------------------------

    def create_topic(self, topic: str, queues: int) -> None:
        """Create `topic` with `queues` queues (otherwise the first send creates it)."""
        if topic in self.store.topics:
            raise ValueError(f"topic {topic!r} exists")
        self.store.ensure_topic(topic, queues)
        self.wakeup()

    def expire(self, topic: str) -> None:
        """Delete the stored messages of `topic`, as retention would (consumers behind skip to
        the end; a new CONSUME_FROM_LAST_OFFSET group starts at the end, not at 0)."""
        self.store.expire(topic)

    def messages(self, topic: str, tag: str | None = None) -> list[StoredMessage]:
        """The visible messages stored in `topic` (copies, in store order), optionally of a tag."""
        out = [m for q in self.store.topics.get(topic, []) for m in q.messages]
        out.sort(key=lambda m: m.commit_log_offset)
        return [copy_message(m) for m in out if tag is None or m.tags == tag]

    def dlq(self, group: str) -> list[StoredMessage]:
        """The messages in `%DLQ%<group>`."""
        return self.messages(dlq_topic(group))

    def retry(self, group: str) -> list[StoredMessage]:
        """The group's retries still to come: those waiting for their delay (as parked in
        SCHEDULE_TOPIC_XXXX, REAL_TOPIC naming the retry topic), then those stored in
        `%RETRY%<group>` beyond the group's committed offset. Each carries RETRY_TOPIC (its
        first topic) and its reconsume times."""
        topic = retry_topic(group)
        waiting = self.store.parked(topic)
        table = self.committed.get(group, {})
        for q in self.store.topics.get(topic, []):
            start = table.get((topic, q.queue_id), q.min_offset)
            waiting += [copy_message(m) for m in q.messages if m.queue_offset >= start]
        return waiting

    def delayed(self, topic: str | None = None) -> list[StoredMessage]:
        """Messages waiting for a delay level or a timer (optionally only those for `topic`),
        earliest due first; their REAL_TOPIC names the topic they will be stored in."""
        return self.store.parked(topic)

    def half_messages(self) -> list[StoredMessage]:
        """Unresolved transactional messages (as stored in RMQ_SYS_TRANS_HALF_TOPIC)."""
        return [h.for_check() for h in self.transactions.half.values()]

    def offsets(self, group: str) -> dict[tuple[str, int], int]:
        """(topic, queue id) -> the committed offset of a CLUSTERING group."""
        return dict(self.committed.get(group, {}))

    def lag(self, group: str, topic: str) -> int:
        """Messages of `topic` the group has not consumed yet (by offset, as RocketMQ's diff)."""
        table = self.committed.get(group, {})
        return sum(
            q.max_offset - max(table.get((topic, q.queue_id), q.min_offset), q.min_offset)
            for q in self.store.topics.get(topic, [])
        )

    def consumers(self, group: str | None = None) -> list[MemoryConsumer]:
        """The started consumers (of one group)."""
        return [c for c in self.members if group is None or c.group == group]
