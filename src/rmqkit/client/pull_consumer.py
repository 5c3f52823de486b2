"""LitePullConsumer: the application asks for messages with `poll()` (RocketMQ
`DefaultLitePullConsumer`), on asyncio, with no thread per queue.

Queues come from `subscribe` (shared in the group by the same rebalancing as the PushConsumer) or
from `assign` (the application picks them). One long-polling pull task per queue fills a buffer
that `poll()` empties batch by batch; pulling pauses while `pull_threshold_for_all` messages wait
in it (or a queue's own thresholds are reached). A queue's consume offset is one past what `poll`
has returned of it; `commit_sync()` (or auto commit every `auto_commit_interval_ms`) stores it.
As the PushConsumer, it pulls from a slave while a queue's master is down (`rebalance.PullNodes`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from rmqkit.client.allocate import Allocate, allocate_averagely
from rmqkit.client.instance import ClientConfig, ClientInstance
from rmqkit.client.message import MessageQueue
from rmqkit.client.namespace import unwrap, unwrap_queue, wrap, wrap_queue
from rmqkit.client.offset_store import LocalOffsetStore, OffsetStore, RemoteOffsetStore
from rmqkit.client.process_queue import ProcessQueue
from rmqkit.client.rebalance import (
    ConsumeFrom,
    MessageModel,
    PullNodes,
    RebalanceLoop,
    allocate_topic,
    broker_offset,
    consumer_entry,
    default_consume_timestamp_ms,
    found_messages,
    pull_command,
    readable_queues,
    start_offset,
    unregister,
)
from rmqkit.common.lifecycle import AsyncLifecycle
from rmqkit.common.subscription import SubscriptionData
from rmqkit.errors import (
    BrokerResponseError,
    ConfigurationError,
    RemotingError,
)
from rmqkit.protocol.acl import SessionCredentials
from rmqkit.protocol.codes import RequestCode, ResponseCode
from rmqkit.protocol.heartbeat import ConsumerEntry
from rmqkit.protocol.record import StoredMessage
from rmqkit.remoting.tls import ClientTls

log = logging.getLogger("rmqkit.consumer.lite_pull")

PULL_ERROR_BACKOFF_S = 3.0
"""RocketMQ's `PULL_TIME_DELAY_MILLS_ON_EXCEPTION`."""
PULL_STUCK_BACKOFF_S = 1.0
"""Wait before pulling again when PULL_RETRY_IMMEDIATELY would send the next pull straight back
to the same broker at the same offset (`PullNodes.follow`)."""
_NOTHING_NEW = (ResponseCode.PULL_NOT_FOUND, ResponseCode.PULL_RETRY_IMMEDIATELY)


@dataclass(eq=False, slots=True)
class _Assigned:
    """One queue this consumer reads: its in-flight messages, offsets and pull task."""

    mq: MessageQueue
    pq: ProcessQueue = field(default_factory=ProcessQueue)
    pull_offset: int = -1
    """The next offset to pull; -1 until the start offset is known."""
    consume_offset: int = -1
    """One past the last message `poll` returned; -1 before the first."""
    resumed: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None


class LitePullConsumer(AsyncLifecycle):
    """Messages on demand: `subscribe` or `assign`, then `poll()` in a loop.

    Args:
        group: the consumer group (offsets are kept under it).
        namesrv_addr: NameServers, `host:port;host:port`.
        namespace: read `<namespace>%<topic>` as `<namespace>%<group>`; topics and queues are
            shown and taken without it.
        message_model: CLUSTERING (subscribed queues shared in the group, offsets on the broker)
            or BROADCASTING (every queue, offsets in a local file).
        consume_from_where / consume_timestamp_ms: where a queue with no committed offset starts.
        allocate: the queue allocation strategy for `subscribe` (`rmqkit.client.allocate`).
        auto_commit / auto_commit_interval_ms: commit the consume offsets this often (and at stop).
        pull_batch_size: messages per pull, so at most this many per `poll`.
        pull_threshold_for_all: stop pulling while this many messages wait to be polled.
        pull_threshold_for_queue / pull_threshold_size_for_queue_mib: the same per queue.
        poll_timeout_ms: how long `poll()` waits by default.
        broker_suspend_max_ms: how long the broker may hold a pull with nothing new (long poll).
        rebalance_interval_ms: how often a subscribing consumer rebalances.
        offset_store_dir: where BROADCASTING offsets are kept (default ~/.rmqkit_offsets).
        credentials: ACL access key and secret (`rmqkit.protocol.acl.SessionCredentials`):
            every request is signed, for brokers with `aclEnable=true`.
        tls: connect over TLS (`rmqkit.remoting.tls.ClientTls`; RocketMQ's `useTLS`), for
            servers with `tls.server.mode` permissive or enforcing. None: plain connections.
    """

    def __init__(
        self,
        group: str,
        namesrv_addr: str,
        *,
        namespace: str = "",
        message_model: MessageModel = "CLUSTERING",
        consume_from_where: ConsumeFrom = "CONSUME_FROM_LAST_OFFSET",
        consume_timestamp_ms: int | None = None,
        allocate: Allocate = allocate_averagely,
        auto_commit: bool = True,
        auto_commit_interval_ms: int = 5_000,
        pull_batch_size: int = 10,
        pull_threshold_for_all: int = 10_000,
        pull_threshold_for_queue: int = 1_000,
        pull_threshold_size_for_queue_mib: int = 100,
        poll_timeout_ms: int = 5_000,
        broker_suspend_max_ms: int = 20_000,
        rebalance_interval_ms: int = 20_000,
        offset_store_dir: Path | None = None,
        instance_name: str = "DEFAULT",
        credentials: SessionCredentials | None = None,
        tls: ClientTls | None = None,
    ) -> None:
        if pull_batch_size <= 0:
            raise ConfigurationError(f"pull_batch_size must be positive, not {pull_batch_size}")
        # RocketMQ's MIN_AUTOCOMMIT_INTERVAL_MILLIS: committing more often only loads the broker.
        if auto_commit_interval_ms < 1_000:
            raise ConfigurationError("auto_commit_interval_ms must be at least 1000")
        self.config = ClientConfig(
            namesrv_addr, instance_name, namespace=namespace, credentials=credentials, tls=tls
        )
        self.namespace = namespace
        self.group = self.config.with_namespace(group)
        self.instance = ClientInstance.shared(self.config)
        self.message_model = message_model
        self.consume_from_where = consume_from_where
        self.consume_timestamp_ms = consume_timestamp_ms or default_consume_timestamp_ms()
        self.allocate = allocate
        self.auto_commit = auto_commit
        self.auto_commit_interval_s = auto_commit_interval_ms / 1000
        self.pull_batch_size = pull_batch_size
        self.threshold_all = pull_threshold_for_all
        self.threshold_queue = pull_threshold_for_queue
        self.threshold_queue_bytes = pull_threshold_size_for_queue_mib * 1024 * 1024
        self.poll_timeout_ms = poll_timeout_ms
        self.suspend_ms = broker_suspend_max_ms
        self.offsets: OffsetStore = (
            # One folder per instance name (RocketMQ uses the client id), so instances of a
            # broadcasting group on one host keep their own progress.
            LocalOffsetStore(
                (offset_store_dir or Path.home() / ".rmqkit_offsets") / instance_name, self.group
            )
            if message_model == "BROADCASTING"
            else RemoteOffsetStore(self.instance, self.group)
        )
        self.subscriptions: dict[str, SubscriptionData] = {}
        self._mode: str | None = None  # "subscribe" or "assign", fixed by the first call
        self._wanted: set[MessageQueue] = set()
        self._assigned: dict[MessageQueue, _Assigned] = {}
        self._buffer: deque[tuple[_Assigned, list[StoredMessage]]] = deque()
        self._buffered = 0
        self._ready = asyncio.Event()
        self._space = asyncio.Event()
        self._rebalancer = RebalanceLoop(self.group, rebalance_interval_ms / 1000, self.rebalance)
        self._nodes = PullNodes(self.instance)
        self._commit_task: asyncio.Task[None] | None = None
        self._side_tasks: set[asyncio.Task[None]] = set()
        self.running = False

    # -- what to read -----------------------------------------------------------------------------

    def _set_mode(self, mode: str) -> None:
        if self._mode not in (None, mode):
            raise ConfigurationError(f"consumer {self.group}: subscribe and assign do not mix")
        self._mode = mode

    def subscribe(self, topic: str, expression: str = "*", expression_type: str = "TAG") -> None:
        """Read `topic` (its messages matching the tag or SQL92 expression), sharing its queues
        with the group's other members."""
        self._set_mode("subscribe")
        topic = wrap(self.namespace, topic)
        self.subscriptions[topic] = SubscriptionData.build(topic, expression, expression_type)
        if self.running:
            if not self._rebalancer.running:
                self._rebalancer.start()
            self._rebalancer.now()

    def unsubscribe(self, topic: str) -> None:
        """Stop reading `topic`; its queues are released at the next rebalance."""
        self.subscriptions.pop(wrap(self.namespace, topic), None)
        if self.running:
            self._rebalancer.now()

    def assign(self, queues: Iterable[MessageQueue], expression: str = "*") -> None:
        """Read exactly these queues (no rebalancing), with a tag expression per topic."""
        self._set_mode("assign")
        self._wanted = {wrap_queue(self.namespace, q) for q in queues}
        for topic in {q.topic for q in self._wanted}:
            self.subscriptions[topic] = SubscriptionData.build(topic, expression)
        if self.running:
            released = self._apply_assignment()
            task = asyncio.get_running_loop().create_task(self._release(released))
            self._side_tasks.add(task)
            task.add_done_callback(self._side_tasks.discard)

    def assignment(self) -> set[MessageQueue]:
        """The queues this consumer reads now."""
        return {unwrap_queue(self.namespace, mq) for mq in self._assigned}

    async def fetch_message_queues(self, topic: str) -> list[MessageQueue]:
        """Every readable queue of `topic` (for `assign`).

        Raises:
            ConfigurationError: no NameServer knows the topic.
        """
        mqs = await readable_queues(self.instance, wrap(self.namespace, topic))
        if mqs is None:
            raise ConfigurationError(f"topic {topic!r} has no route; create it first")
        return [unwrap_queue(self.namespace, q) for q in mqs]

    def _entry(self) -> ConsumerEntry:
        subs = list(self.subscriptions.values())
        return consumer_entry(
            self.group, "CONSUME_ACTIVELY", self.message_model, self.consume_from_where, subs
        )

    # -- lifecycle --------------------------------------------------------------------------------

    async def start(self) -> None:
        if self.running:
            return
        self.instance.consumer_entries[self.group] = self._entry
        self.instance.rebalance_hooks[self.group] = self._rebalancer.now
        self.instance.reset_hooks[self.group] = self._reset_offsets
        await self.instance.start()
        self.running = True
        for topic in self.subscriptions:
            with contextlib.suppress(Exception):
                await self.instance.route(topic, refresh=True)
        await self.instance.heartbeat_all()
        if self._mode == "subscribe":
            self._rebalancer.start()
        elif self._mode == "assign":
            await self._release(self._apply_assignment())
        if self.auto_commit:
            self._commit_task = asyncio.get_running_loop().create_task(self._auto_commit_loop())

    async def stop(self) -> None:
        """Stop pulling, commit (with auto commit), store the offsets, unregister."""
        if not self.running:
            return
        self.running = False
        await self._rebalancer.stop()
        if self._commit_task is not None:
            self._commit_task.cancel()
        tasks = [t for t in (st.task for st in self._assigned.values()) if t is not None]
        for st in self._assigned.values():
            st.pq.dropped = True
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, *[self._commit_task] if self._commit_task else [],
                             return_exceptions=True)  # fmt: skip
        self._commit_task = None
        if self.auto_commit:
            self._commit_locally(list(self._assigned))
        await self.offsets.persist(list(self._assigned))
        self._assigned.clear()
        self._buffer.clear()
        self._buffered = 0
        await unregister(self.instance, self.group)
        self.instance.consumer_entries.pop(self.group, None)
        self.instance.rebalance_hooks.pop(self.group, None)
        self.instance.reset_hooks.pop(self.group, None)
        await self.instance.stop()

    # -- assignment -------------------------------------------------------------------------------

    async def rebalance(self) -> bool:
        """Subscribe mode: take this consumer's share of every subscribed topic; False when
        some topic could not be resolved yet."""
        complete = True
        for topic in {mq.topic for mq in self._assigned} - set(self.subscriptions):
            await self._set_queues(topic, set())
        for topic in list(self.subscriptions):
            mine = await allocate_topic(
                self.instance, self.group, topic, self.message_model, self.allocate
            )
            if mine is None:
                complete = False
                continue
            await self._set_queues(topic, mine)
        return complete

    def _apply_assignment(self) -> list[MessageQueue]:
        topics = {mq.topic for mq in self._assigned} | {mq.topic for mq in self._wanted}
        released: list[MessageQueue] = []
        for topic in topics:
            released += self._swap(topic, {q for q in self._wanted if q.topic == topic})
        return released

    async def _set_queues(self, topic: str, mine: set[MessageQueue]) -> None:
        await self._release(self._swap(topic, mine))

    def _swap(self, topic: str, mine: set[MessageQueue]) -> list[MessageQueue]:
        """Stop reading the queues of `topic` not in `mine`, start the new ones; returns the
        queues let go, whose offsets are still to be stored (`_release`)."""
        released = [q for q in self._assigned if q.topic == topic and q not in mine]
        if self.auto_commit:
            self._commit_locally(released)
        for mq in released:
            self._drop(self._assigned.pop(mq))
            log.info("%s: released %s", self.group, mq)
        for mq in mine - set(self._assigned):
            st = self._assigned[mq] = _Assigned(mq)
            st.resumed.set()
            self._start_pull(st)
            log.info("%s: took %s", self.group, mq)
        return released

    async def _release(self, mqs: list[MessageQueue]) -> None:
        for mq in mqs:
            await self.offsets.persist([mq])
            self.offsets.forget(mq)

    def _drop(self, st: _Assigned) -> None:
        st.pq.dropped = True
        if st.task is not None:
            st.task.cancel()
            st.task = None
        self._discard_buffered(st)

    def _discard_buffered(self, st: _Assigned) -> None:
        kept = [(s, m) for s, m in self._buffer if s is not st]
        if len(kept) != len(self._buffer):
            self._buffer = deque(kept)
            self._buffered = sum(len(m) for _, m in kept)
            self._space.set()

    def _start_pull(self, st: _Assigned) -> None:
        if st.resumed.is_set():
            st.task = asyncio.get_running_loop().create_task(self._pull_loop(st, st.pq))

    def _reset_offsets(self, table: dict[tuple[str, str, int], int]) -> None:
        """An admin moved the group's offsets: read the affected queues from there."""
        for (topic, broker, qid), offset in table.items():
            st = self._assigned.get(MessageQueue(topic, broker, qid))
            if st is not None and offset >= 0:
                self._restart_at(st, offset)
                self.offsets.update(st.mq, offset)

    def _restart_at(self, st: _Assigned, offset: int) -> None:
        self._drop(st)
        st.pq = ProcessQueue()
        st.pull_offset = st.consume_offset = offset
        self._start_pull(st)

    # -- pulling ----------------------------------------------------------------------------------

    def _full(self, pq: ProcessQueue) -> bool:
        return (
            self._buffered >= self.threshold_all
            or pq.count >= self.threshold_queue
            or pq.bytes >= self.threshold_queue_bytes
        )

    async def _pull_loop(self, st: _Assigned, pq: ProcessQueue) -> None:
        mq = st.mq
        while self.running and not pq.dropped and st.resumed.is_set():
            if self._full(pq):
                self._space.clear()  # flow control: wait until poll() takes something
                await self._space.wait()
                continue
            if st.pull_offset < 0:
                start = await start_offset(
                    self.instance, self.offsets, mq, self.consume_from_where,
                    self.consume_timestamp_ms,
                )  # fmt: skip
                if start < 0:
                    await asyncio.sleep(PULL_ERROR_BACKOFF_S)
                    continue
                st.pull_offset = start
            if mq.topic not in self.instance.routes:
                with contextlib.suppress(RemotingError, BrokerResponseError):
                    await self.instance.route(mq.topic)  # an assigned queue: find its broker
            sub = self.subscriptions.get(mq.topic)
            if sub is None:
                await asyncio.sleep(PULL_ERROR_BACKOFF_S)
                continue
            offset = st.pull_offset
            pulled = await self._nodes.pull(mq, offset, partial(
                pull_command, self.group, mq, offset, self.pull_batch_size, sub, -1,
                self.suspend_ms,
            ), self.suspend_ms + 10_000)  # fmt: skip
            if pulled is None:
                await asyncio.sleep(PULL_ERROR_BACKOFF_S)
                continue
            if pq.dropped:
                return
            resp, stuck = pulled
            next_offset = int(resp.ext_fields.get("nextBeginOffset", offset))
            if resp.code == ResponseCode.SUCCESS:
                msgs = found_messages(resp.body, mq, sub)
                if msgs:
                    pq.put(msgs)
                    self._buffer.append((st, msgs))
                    self._buffered += len(msgs)
                    self._ready.set()
                elif pq.count == 0:
                    st.consume_offset = next_offset  # all filtered out: nothing to hand over
            elif resp.code == ResponseCode.PULL_OFFSET_MOVED:
                log.warning("%s: offset %d of %s moved to %d", self.group, offset, mq, next_offset)
            elif resp.code not in _NOTHING_NEW:
                log.warning("pull of %s refused: %s %s", mq, resp.code, resp.remark)
                await asyncio.sleep(PULL_ERROR_BACKOFF_S)
                continue
            st.pull_offset = next_offset
            if stuck:
                await asyncio.sleep(PULL_STUCK_BACKOFF_S)

    # -- polling ----------------------------------------------------------------------------------

    async def poll(self, timeout_ms: int | None = None) -> list[StoredMessage]:
        """The next batch of pulled messages (all from one queue, in order), waiting up to
        `timeout_ms` (default `poll_timeout_ms`) for one; [] when none came in time.

        Raises:
            ConfigurationError: the consumer is not started, or the timeout is negative.
        """
        if not self.running:
            raise ConfigurationError(f"consumer {self.group} is not started; call start() first")
        timeout_ms = self.poll_timeout_ms if timeout_ms is None else timeout_ms
        if timeout_ms < 0:
            raise ConfigurationError("the poll timeout must not be negative")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_ms / 1000
        while True:
            while self._buffer:
                st, msgs = self._buffer.popleft()
                self._buffered -= len(msgs)
                self._space.set()
                if st.pq.dropped or self._assigned.get(st.mq) is not st:
                    continue
                st.consume_offset = st.pq.remove(msgs)
                if self.namespace:
                    for m in msgs:
                        m.topic = unwrap(m.topic, self.namespace)
                return msgs
            self._ready.clear()
            left = deadline - loop.time()
            if left <= 0:
                return []
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(left):
                    await self._ready.wait()

    # -- positions --------------------------------------------------------------------------------

    def _mine(self, mq: MessageQueue) -> _Assigned:
        st = self._assigned.get(wrap_queue(self.namespace, mq))
        if st is None:
            raise ConfigurationError(
                f"{mq} is not assigned to this consumer"
                + (" (yet: it may be rebalancing)" if self._mode == "subscribe" else "")
            )
        return st

    async def seek(self, mq: MessageQueue, offset: int) -> None:
        """Read `mq` from `offset` on: what is buffered of it is dropped, the next `poll`
        returns its messages from there.

        Raises:
            ConfigurationError: `mq` is not assigned, or `offset` is outside the queue.
        """
        st = self._mine(mq)
        low = await broker_offset(self.instance, st.mq, RequestCode.GET_MIN_OFFSET)
        high = await broker_offset(self.instance, st.mq, RequestCode.GET_MAX_OFFSET)
        if not low <= offset <= high:
            raise ConfigurationError(f"seek offset {offset} of {mq} is outside {low}..{high}")
        self._restart_at(st, offset)

    async def seek_to_begin(self, mq: MessageQueue) -> None:
        """Read `mq` from its first message still stored."""
        st = self._mine(mq)
        self._restart_at(st, await broker_offset(self.instance, st.mq, RequestCode.GET_MIN_OFFSET))

    async def seek_to_end(self, mq: MessageQueue) -> None:
        """Read only what arrives in `mq` from now on."""
        st = self._mine(mq)
        self._restart_at(st, await broker_offset(self.instance, st.mq, RequestCode.GET_MAX_OFFSET))

    async def offset_for_timestamp(self, mq: MessageQueue, timestamp_ms: int) -> int:
        """The offset of the first message of `mq` stored at or after `timestamp_ms`."""
        wrapped = wrap_queue(self.namespace, mq)
        return await broker_offset(
            self.instance, wrapped, RequestCode.SEARCH_OFFSET_BY_TIMESTAMP, timestamp=timestamp_ms
        )

    def pause(self, queues: Iterable[MessageQueue]) -> None:
        """Stop pulling these queues at once, a pull in flight included (its answer is not
        taken; the queue is pulled from the same offset on `resume`). What is already buffered
        can still be polled."""
        for mq in queues:
            st = self._assigned.get(wrap_queue(self.namespace, mq))
            if st is not None and st.resumed.is_set():
                st.resumed.clear()
                if st.task is not None:
                    st.task.cancel()
                    st.task = None

    def resume(self, queues: Iterable[MessageQueue]) -> None:
        """Pull paused queues again."""
        for mq in queues:
            st = self._assigned.get(wrap_queue(self.namespace, mq))
            if st is not None and not st.resumed.is_set():
                st.resumed.set()
                if st.task is None and self.running and not st.pq.dropped:
                    self._start_pull(st)

    # -- offsets ----------------------------------------------------------------------------------

    def _commit_locally(self, mqs: Iterable[MessageQueue]) -> list[MessageQueue]:
        done = []
        for mq in mqs:
            st = self._assigned.get(mq)
            if st is not None and st.consume_offset >= 0:
                self.offsets.update(mq, st.consume_offset)
                done.append(mq)
        return done

    async def commit_sync(self, offsets: dict[MessageQueue, int] | None = None) -> None:
        """Store the consume offsets of every assigned queue (or the given ones) on the broker
        (BROADCASTING: in the local file) before returning."""
        if offsets is None:
            mqs = self._commit_locally(list(self._assigned))
        else:
            mqs = []
            for mq, off in offsets.items():
                wrapped = wrap_queue(self.namespace, mq)
                if off >= 0 and wrapped in self._assigned:
                    self.offsets.update(wrapped, off)
                    mqs.append(wrapped)
        await self.offsets.persist(mqs)

    async def committed(self, mq: MessageQueue) -> int:
        """The committed offset of `mq` (-1: none yet)."""
        wrapped = wrap_queue(self.namespace, mq)
        table: dict[MessageQueue, int] = getattr(self.offsets, "table", {})
        if wrapped in table:
            return table[wrapped]
        return await self.offsets.read(wrapped)

    async def _auto_commit_loop(self) -> None:
        while self.running:
            await asyncio.sleep(self.auto_commit_interval_s)
            try:
                await self.commit_sync()
            except Exception:
                log.exception("%s: auto commit failed; continuing", self.group)
