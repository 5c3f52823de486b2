"""PushConsumer: messages pushed to an async handler (RocketMQ `DefaultMQPushConsumer`), with
no thread per consumer: one long-polling pull loop per assigned queue and a fixed pool of
consume workers, all on the event loop.

CLUSTERING groups share the queues (rebalanced every `rebalance_interval_ms` and at once when the
broker announces a member joining or leaving) and keep offsets on the broker; BROADCASTING
consumers read every queue and keep offsets in a local file. The committed offset of a queue is
always the smallest one still in flight, so a crash redelivers and never skips. A queue is pulled
from the member of its broker the last answer suggested, and from a slave while its master is
down (`rebalance.PullNodes`); a failed pull refreshes the route within seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import Enum
from functools import partial
from pathlib import Path
from types import CoroutineType
from typing import Literal, cast

from rmqkit.client.allocate import Allocate, allocate_averagely
from rmqkit.client.instance import ClientConfig, ClientInstance
from rmqkit.client.message import MessageQueue
from rmqkit.client.namespace import unwrap, unwrap_queue, wrap
from rmqkit.client.offset_store import LocalOffsetStore, OffsetStore, RemoteOffsetStore
from rmqkit.client.orderly import OrderlySupport
from rmqkit.client.process_queue import ProcessQueue
from rmqkit.client.rebalance import (
    ConsumeFrom,
    MessageModel,
    PullNodes,
    RebalanceLoop,
    allocate_topic,
    consumer_entry,
    default_consume_timestamp_ms,
    found_messages,
    pull_command,
    start_offset,
    unregister,
)
from rmqkit.client.running_info import (
    CR_LATER,
    CR_SUCCESS,
    CR_THROW_EXCEPTION,
    ConsumerStats,
    client_version,
    direct_result_body,
    process_stacks,
    running_info_body,
    sample_forever,
)
from rmqkit.client.trace import AccessChannel, trace_dispatcher
from rmqkit.common.lifecycle import AsyncLifecycle
from rmqkit.common.names import retry_topic
from rmqkit.common.properties import Prop
from rmqkit.common.subscription import SubscriptionData
from rmqkit.errors import (
    BrokerResponseError,
    ConfigurationError,
    CorruptRecordError,
    RemotingError,
)
from rmqkit.protocol.acl import SessionCredentials
from rmqkit.protocol.codes import RequestCode, ResponseCode
from rmqkit.protocol.command import RemotingCommand
from rmqkit.protocol.heartbeat import ConsumerEntry
from rmqkit.protocol.record import StoredMessage, decode_record
from rmqkit.protocol.route import MASTER_ID
from rmqkit.remoting.eager import Suspended
from rmqkit.remoting.tls import ClientTls

log = logging.getLogger("rmqkit.consumer")

__all__ = [
    "ConsumeContext",
    "ConsumeFrom",
    "ConsumeMode",
    "ConsumeResult",
    "Handler",
    "MessageModel",
    "PushConsumer",
    "failed_messages",
]

ConsumeMode = Literal["CONCURRENTLY", "ORDERLY"]
PULL_SUSPEND_MS = 15_000
PULL_ERROR_BACKOFF_S = 3.0
PULL_STUCK_BACKOFF_S = 1.0
"""Wait before pulling again when PULL_RETRY_IMMEDIATELY would send the next pull straight back
to the same broker at the same offset (`PullNodes.follow`)."""


class ConsumeResult(Enum):
    SUCCESS = "CONSUME_SUCCESS"
    RECONSUME_LATER = "RECONSUME_LATER"


@dataclass(slots=True)
class ConsumeContext:
    """Passed to the handler with each batch.

    Attributes:
        queue: where the batch came from.
        ack_index: on SUCCESS, the last message that succeeded: the ones after it are retried.
        delay_level_when_next_consume: the retry delay level for failed messages (0: the
            broker's back-off, 1..18: that level, -1: straight to the dead-letter queue).
        failed: on SUCCESS, when set, exactly these messages failed (index -> delay level, as
            above) and all others succeeded; it takes precedence over `ack_index`.
    """

    queue: MessageQueue
    ack_index: int
    delay_level_when_next_consume: int = 0
    failed: dict[int, int] | None = None


Handler = Callable[[list[StoredMessage], ConsumeContext], Awaitable[ConsumeResult | None]]


class PushConsumer(AsyncLifecycle):
    """Consumes the topics it subscribes to and calls the handler with each batch.

    Args:
        group: the consumer group.
        namesrv_addr: NameServers, `host:port;host:port`.
        message_model: CLUSTERING (share queues) or BROADCASTING (every consumer gets everything).
        consume_mode: CONCURRENTLY, or ORDERLY (one queue's messages in order, one at a time;
            see `rmqkit.client.orderly`).
        suspend_current_queue_time_ms: ORDERLY: how long a queue pauses after a failure.
        consume_from_where: where a group with no committed offset starts.
        consume_timestamp_ms: the start for CONSUME_FROM_TIMESTAMP.
        allocate: the queue allocation strategy (see `rmqkit.client.allocate`).
        consume_concurrency: handler calls at once (RocketMQ's consumeThreadMax).
        consume_message_batch_max_size: messages per handler call.
        pull_batch_size: messages per pull.
        pull_threshold_for_queue / pull_threshold_size_for_queue_mib: stop pulling a queue while
            this many messages / MiB of it wait to be consumed.
        max_reconsume_times: retries before the broker moves a message to `%DLQ%<group>`.
        consume_timeout_s: a handler running longer counts as failed.
        offset_store_dir: where BROADCASTING offsets are kept, under one folder per
            `instance_name` (default ~/.rmqkit_offsets).
        local_retry_delay_ms: when the broker cannot take a failed message back, it is consumed
            again here after this delay.
        namespace: consume `<namespace>%<topic>` as `<namespace>%<group>` (see
            `rmqkit.client.namespace`); the handler sees topics and queues without it.
        enable_msg_trace: record each consumption in RocketMQ's trace topic (see
            `rmqkit.client.trace`).
        trace_topic: the trace topic (Spring's `customizedTraceTopic`); None: RMQ_SYS_TRACE_TOPIC.
        access_channel: "CLOUD" sends traces to the message's region's topic,
            `rmq_sys_TRACE_DATA_<MSG_REGION>`, as clients of Alibaba Cloud's RocketMQ do.
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
        message_model: MessageModel = "CLUSTERING",
        consume_mode: ConsumeMode = "CONCURRENTLY",
        suspend_current_queue_time_ms: int = 1_000,
        consume_from_where: ConsumeFrom = "CONSUME_FROM_LAST_OFFSET",
        consume_timestamp_ms: int | None = None,
        allocate: Allocate = allocate_averagely,
        consume_concurrency: int = 20,
        consume_message_batch_max_size: int = 1,
        pull_batch_size: int = 32,
        pull_threshold_for_queue: int = 1000,
        pull_threshold_size_for_queue_mib: int = 100,
        max_reconsume_times: int = 16,
        consume_timeout_s: float = 15 * 60,
        rebalance_interval_ms: int = 20_000,
        persist_interval_ms: int = 5_000,
        await_termination_ms: int = 5_000,
        offset_store_dir: Path | None = None,
        local_retry_delay_ms: int = 5_000,
        instance_name: str = "DEFAULT",
        namespace: str = "",
        enable_msg_trace: bool = False,
        trace_topic: str | None = None,
        access_channel: AccessChannel = "LOCAL",
        credentials: SessionCredentials | None = None,
        tls: ClientTls | None = None,
    ) -> None:
        self.config = ClientConfig(
            namesrv_addr, instance_name, namespace=namespace, credentials=credentials, tls=tls
        )
        self.namespace = namespace
        self.group = self.config.with_namespace(group)
        self.instance = ClientInstance.shared(self.config)
        self.trace = trace_dispatcher(
            enable_msg_trace, self.instance, lambda: self.running, trace_topic, access_channel
        )
        self.message_model = message_model
        self.orderly = (
            OrderlySupport(self, suspend_current_queue_time_ms)
            if consume_mode == "ORDERLY"
            else None
        )
        self.consume_from_where = consume_from_where
        self.consume_timestamp_ms = consume_timestamp_ms or default_consume_timestamp_ms()
        self.allocate = allocate
        self.concurrency = consume_concurrency
        self.batch_max = consume_message_batch_max_size
        self.pull_batch_size = pull_batch_size
        self.pull_threshold = pull_threshold_for_queue
        self.pull_threshold_bytes = pull_threshold_size_for_queue_mib * 1024 * 1024
        self.max_reconsume_times = max_reconsume_times
        self.consume_timeout_s = consume_timeout_s
        self.rebalance_interval_s = rebalance_interval_ms / 1000
        self.persist_interval_s = persist_interval_ms / 1000
        self.await_termination_s = await_termination_ms / 1000
        self.local_retry_s = local_retry_delay_ms / 1000
        self.subscriptions: dict[str, SubscriptionData] = {}
        self.handler: Handler | None = None
        self._user_handler: Handler | None = None
        """The handler as registered (without the trace wrapper): CONSUME_MESSAGE_DIRECTLY
        calls it, as Java calls the listener, with no hooks."""
        self.stats = ConsumerStats()
        """Pull and consume figures per topic, for GET_CONSUMER_RUNNING_INFO."""
        self.started_ms = 0
        self.offsets: OffsetStore = (
            # One folder per instance name (RocketMQ uses the client id), so instances of a
            # broadcasting group on one host keep their own progress.
            LocalOffsetStore(
                (offset_store_dir or Path.home() / ".rmqkit_offsets") / instance_name, self.group
            )
            if message_model == "BROADCASTING"
            else RemoteOffsetStore(self.instance, self.group)
        )
        self.process_queues: dict[MessageQueue, ProcessQueue] = {}
        self._pulls: dict[MessageQueue, asyncio.Task[None]] = {}
        self._nodes = PullNodes(self.instance)
        self._work: asyncio.Queue[tuple[MessageQueue, ProcessQueue, list[StoredMessage]]] = (
            asyncio.Queue()
        )
        self._tasks: list[asyncio.Task[None]] = []
        self._rebalancer = RebalanceLoop(self.group, rebalance_interval_ms / 1000, self.rebalance)
        self._user_queues: dict[MessageQueue, MessageQueue] = {}
        """Queue as the broker names it -> as the handler sees it (namespace taken off)."""
        self.running = False

    # -- set-up -----------------------------------------------------------------------------------

    def subscribe(self, topic: str, expression: str = "*", expression_type: str = "TAG") -> None:
        """Receive `topic`'s messages matching the expression: a tag expression (`*`,
        `TagA || TagB`), or with `expression_type="SQL92"` a SQL92 filter on properties (the
        broker must run with `enablePropertyFilter=true`)."""
        topic = wrap(self.namespace, topic)
        self.subscriptions[topic] = SubscriptionData.build(topic, expression, expression_type)

    def register(self, handler: Handler) -> None:
        """The async function called with each batch."""
        self._user_handler = handler
        self.handler = handler if self.trace is None else self.trace.wrap_handler(self, handler)

    def _entry(self) -> ConsumerEntry:
        subs = list(self.subscriptions.values())
        return consumer_entry(
            self.group, "CONSUME_PASSIVELY", self.message_model, self.consume_from_where, subs
        )

    # -- lifecycle --------------------------------------------------------------------------------

    async def start(self) -> None:
        if self.handler is None or not self.subscriptions:
            raise ConfigurationError(
                f"consumer {self.group}: register a handler and subscribe to a topic before start()"
            )
        if self.message_model == "CLUSTERING":
            self.subscriptions.setdefault(
                retry_topic(self.group), SubscriptionData.build(retry_topic(self.group), "*")
            )
        self.instance.consumer_entries[self.group] = self._entry
        self.instance.rebalance_hooks[self.group] = self._rebalancer.now
        self.instance.reset_hooks[self.group] = self.reset_offsets
        self.instance.running_info_hooks[self.group] = self.running_info
        self.instance.direct_consume_hooks[self.group] = self.consume_directly
        self.started_ms = int(time.time() * 1000)
        await self.instance.start()
        self.running = True
        for topic in self.subscriptions:
            with contextlib.suppress(RemotingError, BrokerResponseError):
                await self.instance.route(topic, refresh=True)
        await self.instance.heartbeat_all()
        loop = asyncio.get_running_loop()
        self._rebalancer.start()
        self._tasks = [loop.create_task(self._persist_loop())]
        self._tasks += [loop.create_task(self._worker()) for _ in range(self.concurrency)]
        self._tasks.append(loop.create_task(sample_forever(self.stats)))

    async def stop(self) -> None:
        """Stop pulling, let handlers finish (up to `await_termination_ms`), commit, unregister."""
        if not self.running:
            return
        self.running = False
        for pq in self.process_queues.values():
            pq.dropped = True
        await self._rebalancer.stop()
        for t in [*self._pulls.values(), *self._tasks[:1]]:
            t.cancel()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.await_termination_s):
                await self._work.join()
        if self.orderly is not None:
            await self.orderly.drain(self.await_termination_s)
            await self.orderly.unlock(list(self.process_queues))
        for t in self._tasks[1:]:
            t.cancel()
        await asyncio.gather(*self._pulls.values(), *self._tasks, return_exceptions=True)
        await self.offsets.persist(list(self.process_queues))
        await unregister(self.instance, self.group)
        self.instance.consumer_entries.pop(self.group, None)
        self.instance.rebalance_hooks.pop(self.group, None)
        self.instance.reset_hooks.pop(self.group, None)
        self.instance.running_info_hooks.pop(self.group, None)
        self.instance.direct_consume_hooks.pop(self.group, None)
        await self.instance.stop()

    # -- rebalance --------------------------------------------------------------------------------

    async def rebalance(self) -> bool:
        """Compute this consumer's queues for every subscribed topic and start or stop pulls;
        False when some topic could not be resolved yet."""
        complete = True
        for topic in list(self.subscriptions):
            mine = await allocate_topic(
                self.instance, self.group, topic, self.message_model, self.allocate
            )
            if mine is None:
                complete = False
                continue
            await self._assign(topic, mine)
        return complete

    async def _assign(self, topic: str, mine: set[MessageQueue]) -> None:
        for mq in [q for q in self.process_queues if q.topic == topic and q not in mine]:
            pq = self.process_queues.pop(mq)
            pq.dropped = True
            task = self._pulls.pop(mq, None)
            if task is not None:
                task.cancel()
            await self.offsets.persist([mq])
            self.offsets.forget(mq)
            if self.orderly is not None:
                self.orderly.stop_queue(mq)
                await self.orderly.unlock([mq])
            log.info("%s: released %s", self.group, mq)
        new = mine - set(self.process_queues)
        if self.orderly is not None:
            held = [q for q in self.process_queues if q.topic == topic]
            locked = await self.orderly.lock(sorted(new | set(held), key=str))
            for mq in [q for q in held if q not in locked]:  # our lock lapsed: stop reading it
                await self._assign_drop(mq)
            now_ms = int(time.time() * 1000)
            for mq in held:
                if mq in locked:
                    self.process_queues[mq].last_lock_ms = now_ms
            new &= locked
        for mq in new:
            start = await self._start_offset(mq)
            if start < 0:
                continue
            pq = self.process_queues[mq] = ProcessQueue()
            if self.orderly is not None:
                pq.last_lock_ms = int(time.time() * 1000)
                self.orderly.start_queue(mq, pq)
            self._pulls[mq] = asyncio.get_running_loop().create_task(self._pull_loop(mq, pq, start))
            log.info("%s: took %s from offset %d", self.group, mq, start)

    async def _assign_drop(self, mq: MessageQueue) -> None:
        pq = self.process_queues.pop(mq)
        pq.dropped = True
        task = self._pulls.pop(mq, None)
        if task is not None:
            task.cancel()
        if self.orderly is not None:
            self.orderly.stop_queue(mq)
        log.warning("%s: lost the lock of %s; stopped reading it", self.group, mq)

    def reset_offsets(self, table: dict[tuple[str, str, int], int]) -> None:
        """An admin moved the group's offsets: restart the affected queues from there."""
        for (topic, broker, qid), offset in table.items():
            mq = MessageQueue(topic, broker, qid)
            if offset < 0 or mq not in self.process_queues:
                continue
            self.process_queues[mq].dropped = True
            task = self._pulls.pop(mq, None)
            if task is not None:
                task.cancel()
            self.offsets.update(mq, offset)
            pq = self.process_queues[mq] = ProcessQueue()
            self._pulls[mq] = asyncio.get_running_loop().create_task(
                self._pull_loop(mq, pq, offset)
            )
            log.warning("%s: %s reset to offset %d", self.group, mq, offset)

    async def _start_offset(self, mq: MessageQueue) -> int:
        return await start_offset(self.instance, self.offsets, mq, self.consume_from_where,
                                  self.consume_timestamp_ms)  # fmt: skip

    # -- pulling ----------------------------------------------------------------------------------

    async def _pull_loop(self, mq: MessageQueue, pq: ProcessQueue, offset: int) -> None:
        sub = self.subscriptions[mq.topic]
        clustering = self.message_model == "CLUSTERING"
        counters = self.stats.topic(mq.topic)
        clock = asyncio.get_running_loop().time
        while self.running and not pq.dropped:
            if pq.count >= self.pull_threshold or pq.bytes >= self.pull_threshold_bytes:
                await asyncio.sleep(0.05)  # flow control: the handlers are behind
                continue
            commit = self.offsets.table.get(mq, -1) if clustering else -1  # type: ignore[attr-defined]
            pq.last_pull_ms = int(time.time() * 1000)
            began = clock()
            pulled = await self._nodes.pull(mq, offset, partial(
                pull_command, self.group, mq, offset, self.pull_batch_size, sub, commit,
                PULL_SUSPEND_MS,
            ), PULL_SUSPEND_MS + 5_000)  # fmt: skip
            if pulled is None:
                await asyncio.sleep(PULL_ERROR_BACKOFF_S)
                continue
            if pq.dropped:
                return
            resp, stuck = pulled
            next_offset = int(resp.ext_fields.get("nextBeginOffset", offset))
            if resp.code == ResponseCode.SUCCESS:
                msgs = found_messages(resp.body, mq, sub)
                offset = next_offset
                if msgs:
                    counters.pulls += 1
                    counters.pulled += len(msgs)
                    counters.pull_rt_ms += (clock() - began) * 1000
                    pq.put(msgs)
                    if self.orderly is not None:
                        self.orderly.submit(mq, msgs)
                    else:
                        for i in range(0, len(msgs), self.batch_max):
                            self._work.put_nowait((mq, pq, msgs[i : i + self.batch_max]))
                elif pq.count == 0:
                    self.offsets.update(mq, offset)
            elif resp.code in (ResponseCode.PULL_NOT_FOUND, ResponseCode.PULL_RETRY_IMMEDIATELY):
                offset = next_offset
                if stuck:
                    await asyncio.sleep(PULL_STUCK_BACKOFF_S)
            elif resp.code == ResponseCode.PULL_OFFSET_MOVED:
                log.warning("%s: offset %d of %s moved to %d", self.group, offset, mq, next_offset)
                offset = next_offset
                self.offsets.update(mq, offset)
                await self.offsets.persist([mq])
            else:
                log.warning("pull of %s refused: %s %s", mq, resp.code, resp.remark)
                await asyncio.sleep(PULL_ERROR_BACKOFF_S)

    async def _persist_loop(self) -> None:
        while self.running:
            await asyncio.sleep(self.persist_interval_s)
            try:
                await self.offsets.persist(list(self.process_queues))
            except Exception:
                log.exception("offset persist failed; continuing")

    # -- consuming --------------------------------------------------------------------------------

    async def _worker(self) -> None:
        assert self.handler is not None
        handler = self.handler
        work = self._work
        while True:
            # get_nowait when there is work: no coroutine for `get()` per message.
            mq, pq, batch = work.get_nowait() if work.qsize() else await work.get()
            try:
                if not pq.dropped:  # else the queue moved to another consumer, which redelivers
                    await self._consume(handler, mq, pq, batch)
            finally:
                self._work.task_done()

    async def _run_handler(
        self, mq: MessageQueue, batch: list[StoredMessage]
    ) -> list[tuple[StoredMessage, int]]:
        """Call the handler with one batch; returns the messages that failed, each with the delay
        level of its retry."""
        assert self.handler is not None
        for m in batch:
            self._user_topic(m)
        ctx = ConsumeContext(self._user_queue(mq) if self.namespace else mq, len(batch) - 1)
        began = time.monotonic()
        try:
            result = await self._call(self.handler, batch, ctx) or ConsumeResult.SUCCESS
        except Exception:
            log.exception("%s: handler failed on %s", self.group, [m.msg_id for m in batch])
            result = ConsumeResult.RECONSUME_LATER
        failed = failed_messages(batch, result, ctx)
        c = self.stats.topics.get(mq.topic) or self.stats.topic(mq.topic)
        c.calls += 1
        c.consume_rt_ms += (time.monotonic() - began) * 1000
        c.failed += len(failed)
        c.ok += len(batch) - len(failed)
        return failed

    async def _call(
        self, handler: Handler, batch: list[StoredMessage], ctx: ConsumeContext
    ) -> ConsumeResult | None:
        """The handler under the consume timeout. Its first step runs eagerly: one that finishes
        without waiting never needed the timer (a timeout can only interrupt a wait)."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        work = handler(batch, ctx)
        if type(work) is CoroutineType:
            try:
                first = work.send(None)
            except StopIteration as done:
                return cast("ConsumeResult | None", done.value)
            async with asyncio.timeout_at(started + self.consume_timeout_s):
                return await Suspended(work, first)
        async with asyncio.timeout_at(started + self.consume_timeout_s):
            return await work

    def _user_topic(self, m: StoredMessage) -> None:
        """Give `m` the topic its handler sees: a retried message's own (not `%RETRY%<group>`),
        without the namespace."""
        real = m.properties.get(Prop.RETRY_TOPIC)
        if real:
            m.topic = real
        if self.namespace:
            m.topic = unwrap(m.topic, self.namespace)

    def _user_queue(self, mq: MessageQueue) -> MessageQueue:
        user = self._user_queues.get(mq)
        if user is None:
            user = self._user_queues[mq] = unwrap_queue(self.namespace, mq)
        return user

    async def call_handler(
        self, mq: MessageQueue, batch: list[StoredMessage]
    ) -> list[tuple[StoredMessage, int]]:
        """ORDERLY: the messages of the batch that failed, with their delay levels."""
        return await self._run_handler(mq, batch)

    async def _consume(
        self, handler: Handler, mq: MessageQueue, pq: ProcessQueue, batch: list[StoredMessage]
    ) -> None:
        failed = await self._run_handler(mq, batch)
        keep: list[StoredMessage] = []
        if failed and self.message_model == "CLUSTERING":
            keep = [m for m, level in failed if not await self.send_back(m, mq, level)]
        elif failed:
            log.warning("%s (broadcasting): dropping %d failed messages", self.group, len(failed))
        done = [m for m in batch if m not in keep] if keep else batch
        commit = pq.remove(done)
        if commit >= 0 and not pq.dropped:
            self.offsets.update(mq, commit)
        if keep and not pq.dropped:
            # The broker could not take them back: consume them again here a little later.
            asyncio.get_running_loop().call_later(
                self.local_retry_s, self._work.put_nowait, (mq, pq, keep)
            )

    async def send_back(self, m: StoredMessage, mq: MessageQueue, delay_level: int = 0) -> bool:
        """CONSUMER_SEND_MSG_BACK: the broker schedules a retry (or, at level -1 or past the
        maximum, moves it to the DLQ). It writes, so it goes to the master only: while the master
        is down this returns False and the message is consumed again here (`local_retry_delay_ms`).
        """
        master = self.instance.find_broker_addr(mq.broker_name, MASTER_ID, only_this=True)
        if master is None:
            return False
        try:
            resp = await self.instance.invoke(master.addr, RemotingCommand(
                RequestCode.CONSUMER_SEND_MSG_BACK,
                ext_fields={"offset": str(m.commit_log_offset), "group": self.group,
                            "delayLevel": str(delay_level), "originMsgId": m.msg_id,
                            "originTopic": wrap(self.namespace, m.topic),
                            "maxReconsumeTimes": str(self.max_reconsume_times)},
            ))  # fmt: skip
        except RemotingError:
            return False
        return resp.code == ResponseCode.SUCCESS

    # -- admin calls (the broker passes them on from an admin tool) -------------------------------

    def running_info(self, jstack: bool) -> bytes:
        """GET_CONSUMER_RUNNING_INFO's answer: settings, subscriptions, each held queue's state
        and each topic's figures (see `rmqkit.client.running_info`)."""
        orderly = self.orderly is not None
        props = {
            "consumerGroup": self.group,
            "messageModel": self.message_model,
            "consumeFromWhere": self.consume_from_where,
            "consumeThreadMax": str(self.concurrency),
            "consumeMessageBatchMaxSize": str(self.batch_max),
            "pullBatchSize": str(self.pull_batch_size),
            "pullThresholdForQueue": str(self.pull_threshold),
            "pullThresholdSizeForQueue": str(self.pull_threshold_bytes // (1024 * 1024)),
            "maxReconsumeTimes": str(self.max_reconsume_times),
            "consumeTimeout": str(int(self.consume_timeout_s // 60)),
            "instanceName": self.config.instance_name,
            "namespace": self.namespace,
            "clientIP": self.instance.client_id.split("@", 1)[0],
            "PROP_NAMESERVER_ADDR": "".join(f"{a};" for a in self.config.namesrv_addrs),
            "PROP_THREADPOOL_CORE_SIZE": str(self.concurrency),
            "PROP_CONSUMEORDERLY": str(orderly).lower(),
            "PROP_CONSUME_TYPE": "CONSUME_PASSIVELY",
            "PROP_CLIENT_VERSION": client_version(),
            "PROP_CONSUMER_START_TIMESTAMP": str(self.started_ms),
        }
        table = self.offsets.table  # type: ignore[attr-defined]
        queues = {
            (mq.topic, mq.broker_name, mq.queue_id): pq.info(table.get(mq, -1), locked=orderly)
            for mq, pq in self.process_queues.items()
        }
        now = asyncio.get_running_loop().time()
        status = {t: self.stats.status(t, now) for t in self.subscriptions}
        return running_info_body(
            props, list(self.subscriptions.values()), queues, status,
            process_stacks() if jstack else None,
        )  # fmt: skip

    async def consume_directly(self, cmd: RemotingCommand) -> bytes:
        """CONSUME_MESSAGE_DIRECTLY's answer: the registered handler run on the stored record
        of the request's body, outside the consume loop (no offset moves, no retry), and how it
        went as a `CMResult` name."""
        assert self._user_handler is not None
        began = time.monotonic()
        remark = None
        try:
            m = decode_record(cmd.body)
        except CorruptRecordError as exc:
            outcome, remark = CR_THROW_EXCEPTION, f"unreadable message: {exc}"
        else:
            self._user_topic(m)
            mq = MessageQueue(m.topic, cmd.ext_fields.get("brokerName", ""), m.queue_id)
            ctx = ConsumeContext(mq, 0)
            try:
                result = await self._call(self._user_handler, [m], ctx) or ConsumeResult.SUCCESS
            except Exception as exc:
                outcome, remark = CR_THROW_EXCEPTION, f"{type(exc).__name__}: {exc}"
            else:
                outcome = CR_LATER if failed_messages([m], result, ctx) else CR_SUCCESS
        spent = int((time.monotonic() - began) * 1000)
        return direct_result_body(
            outcome, order=self.orderly is not None, spent_ms=spent, remark=remark
        )


def failed_messages(
    batch: list[StoredMessage], result: ConsumeResult, ctx: ConsumeContext
) -> list[tuple[StoredMessage, int]]:
    """The messages of a handled batch that failed, each with the delay level of its retry."""
    level = ctx.delay_level_when_next_consume
    if result is not ConsumeResult.SUCCESS:
        return [(m, level) for m in batch]
    if ctx.failed is not None:
        return [(batch[i], lv) for i, lv in sorted(ctx.failed.items()) if 0 <= i < len(batch)]
    return [(m, level) for m in batch[max(-1, ctx.ack_index) + 1 :]]
