"""PushConsumer: messages pushed to an async handler (RocketMQ `DefaultMQPushConsumer`), with
no thread per consumer: one long-polling pull loop per assigned queue and a fixed pool of
consume workers, all on the event loop.

CLUSTERING groups share the queues (rebalanced every `rebalance_interval_ms` and at once when the
broker announces a member joining or leaving) and keep offsets on the broker; BROADCASTING
consumers read every queue and keep offsets in a local file. The committed offset of a queue is
always the smallest one still in flight, so a crash redelivers and never skips.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Literal

from rmqkit.client.allocate import Allocate, allocate_averagely
from rmqkit.client.instance import ClientConfig, ClientInstance
from rmqkit.client.message import MessageQueue
from rmqkit.client.offset_store import LocalOffsetStore, OffsetStore, RemoteOffsetStore
from rmqkit.client.orderly import OrderlySupport
from rmqkit.client.process_queue import ProcessQueue
from rmqkit.common.lifecycle import AsyncLifecycle
from rmqkit.common.names import retry_topic
from rmqkit.common.properties import Prop
from rmqkit.common.subscription import SubscriptionData
from rmqkit.common.topic import perm_readable
from rmqkit.errors import BrokerResponseError, ConfigurationError, CorruptRecordError, RemotingError
from rmqkit.protocol.codes import RequestCode, ResponseCode
from rmqkit.protocol.command import RemotingCommand
from rmqkit.protocol.heartbeat import ConsumerEntry, SubscriptionEntry
from rmqkit.protocol.record import StoredMessage, decode_records

log = logging.getLogger("rmqkit.consumer")

MessageModel = Literal["CLUSTERING", "BROADCASTING"]
ConsumeMode = Literal["CONCURRENTLY", "ORDERLY"]
ConsumeFrom = Literal[
    "CONSUME_FROM_LAST_OFFSET", "CONSUME_FROM_FIRST_OFFSET", "CONSUME_FROM_TIMESTAMP"
]
PULL_SUSPEND_MS = 15_000
PULL_ERROR_BACKOFF_S = 3.0


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
        offset_store_dir: where BROADCASTING offsets are kept (default ~/.rmqkit_offsets).
        local_retry_delay_ms: when the broker cannot take a failed message back, it is consumed
            again here after this delay.
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
    ) -> None:
        self.group = group
        self.instance = ClientInstance.shared(ClientConfig(namesrv_addr, instance_name))
        self.message_model = message_model
        self.orderly = (
            OrderlySupport(self, suspend_current_queue_time_ms)
            if consume_mode == "ORDERLY"
            else None
        )
        self.consume_from_where = consume_from_where
        self.consume_timestamp_ms = consume_timestamp_ms or int(time.time() * 1000) - 30 * 60_000
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
        self.offsets: OffsetStore = (
            LocalOffsetStore(offset_store_dir or Path.home() / ".rmqkit_offsets", group)
            if message_model == "BROADCASTING"
            else RemoteOffsetStore(self.instance, group)
        )
        self.process_queues: dict[MessageQueue, ProcessQueue] = {}
        self._pulls: dict[MessageQueue, asyncio.Task[None]] = {}
        self._work: asyncio.Queue[tuple[MessageQueue, ProcessQueue, list[StoredMessage]]] = (
            asyncio.Queue()
        )
        self._tasks: list[asyncio.Task[None]] = []
        self._rebalance_now = asyncio.Event()
        self.running = False

    # -- set-up -----------------------------------------------------------------------------------

    def subscribe(self, topic: str, expression: str = "*", expression_type: str = "TAG") -> None:
        """Receive `topic`'s messages matching the expression: a tag expression (`*`,
        `TagA || TagB`), or with `expression_type="SQL92"` a SQL92 filter on properties (the
        broker must run with `enablePropertyFilter=true`)."""
        self.subscriptions[topic] = SubscriptionData.build(topic, expression, expression_type)

    def register(self, handler: Handler) -> None:
        """The async function called with each batch."""
        self.handler = handler

    def _entry(self) -> ConsumerEntry:
        return ConsumerEntry(
            self.group,
            "CONSUME_PASSIVELY",
            self.message_model,
            self.consume_from_where,
            [
                SubscriptionEntry(s.topic, s.sub_string, s.expression_type, s.sub_version,
                                  sorted(s.tags or ()), sorted(s.codes or ()))
                for s in self.subscriptions.values()
            ],
        )  # fmt: skip

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
        self.instance.rebalance_hooks[self.group] = self._rebalance_now.set
        self.instance.reset_hooks[self.group] = self.reset_offsets
        await self.instance.start()
        self.running = True
        for topic in self.subscriptions:
            with contextlib.suppress(RemotingError, BrokerResponseError):
                await self.instance.route(topic, refresh=True)
        await self.instance.heartbeat_all()
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._rebalance_loop()),
            loop.create_task(self._persist_loop()),
        ]
        self._tasks += [loop.create_task(self._worker()) for _ in range(self.concurrency)]

    async def stop(self) -> None:
        """Stop pulling, let handlers finish (up to `await_termination_ms`), commit, unregister."""
        if not self.running:
            return
        self.running = False
        for pq in self.process_queues.values():
            pq.dropped = True
        for t in [*self._pulls.values(), *self._tasks[:2]]:
            t.cancel()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._work.join(), self.await_termination_s)
        if self.orderly is not None:
            await self.orderly.drain(self.await_termination_s)
            await self.orderly.unlock(list(self.process_queues))
        for t in self._tasks[2:]:
            t.cancel()
        await asyncio.gather(*self._pulls.values(), *self._tasks, return_exceptions=True)
        await self.offsets.persist(list(self.process_queues))
        await self._unregister()
        self.instance.consumer_entries.pop(self.group, None)
        self.instance.rebalance_hooks.pop(self.group, None)
        self.instance.reset_hooks.pop(self.group, None)
        await self.instance.stop()

    async def _unregister(self) -> None:
        ext = {"clientID": self.instance.client_id, "consumerGroup": self.group}
        for addrs in self.instance.broker_addrs().values():
            for addr in addrs.values():
                cmd = RemotingCommand(RequestCode.UNREGISTER_CLIENT, ext_fields=dict(ext))
                with contextlib.suppress(RemotingError):
                    await self.instance.invoke(addr, cmd, 1_000)

    # -- rebalance --------------------------------------------------------------------------------

    async def _rebalance_loop(self) -> None:
        # A topic with no route yet (its first message not sent) is looked up again soon, backing
        # off from 1 s to the rebalance interval, so a consumer started first does not wait
        # a whole interval for the first messages.
        retry_s = 1.0
        while self.running:
            complete = False
            try:
                complete = await self.rebalance()
            except Exception:
                log.exception("rebalance of %s failed; retrying", self.group)
            wait_s = self.rebalance_interval_s if complete else retry_s
            retry_s = 1.0 if complete else min(retry_s * 2, self.rebalance_interval_s)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._rebalance_now.wait(), wait_s)
            self._rebalance_now.clear()

    async def rebalance(self) -> bool:
        """Compute this consumer's queues for every subscribed topic and start or stop pulls;
        False when some topic could not be resolved yet."""
        complete = True
        for topic in list(self.subscriptions):
            try:
                route = await self.instance.route(topic, refresh=True)
            except (RemotingError, BrokerResponseError) as exc:
                log.debug("no route for %s yet: %s", topic, exc)
                complete = False
                continue
            if route is None:
                complete = False
                continue
            mqs = [
                MessageQueue(topic, qd.broker_name, i)
                for qd in route.queue_datas if perm_readable(qd.perm)
                for i in range(qd.read_queue_nums)
            ]  # fmt: skip
            if self.message_model == "BROADCASTING":
                mine = mqs
            else:
                cids = await self._consumer_ids(route.broker_datas[0].broker_addrs.get(0)
                                                if route.broker_datas else None)  # fmt: skip
                if not cids:
                    complete = False
                    continue
                mine = self.allocate(self.instance.client_id, mqs, cids)
            await self._assign(topic, set(mine))
        return complete

    async def _consumer_ids(self, addr: str | None) -> list[str]:
        if addr is None:
            return []
        try:
            resp = await self.instance.invoke(addr, RemotingCommand(
                RequestCode.GET_CONSUMER_LIST_BY_GROUP, ext_fields={"consumerGroup": self.group}
            ))  # fmt: skip
        except RemotingError:
            return []
        if resp.code != ResponseCode.SUCCESS:
            return []
        import orjson

        return [str(c) for c in orjson.loads(resp.body).get("consumerIdList", [])]

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
            new &= locked
        for mq in new:
            start = await self._start_offset(mq)
            if start < 0:
                continue
            pq = self.process_queues[mq] = ProcessQueue()
            if self.orderly is not None:
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
        try:
            off = await self.offsets.read(mq)
            if off >= 0:
                return off
            if self.consume_from_where == "CONSUME_FROM_FIRST_OFFSET":
                return 0
            is_retry = mq.topic.startswith("%RETRY%")
            if self.consume_from_where == "CONSUME_FROM_TIMESTAMP" and not is_retry:
                return await self._broker_offset(
                    mq, RequestCode.SEARCH_OFFSET_BY_TIMESTAMP, timestamp=self.consume_timestamp_ms
                )
            return 0 if is_retry else await self._broker_offset(mq, RequestCode.GET_MAX_OFFSET)
        except (RemotingError, BrokerResponseError) as exc:
            log.warning("%s: no start offset for %s yet: %s", self.group, mq, exc)
            return -1

    async def _broker_offset(self, mq: MessageQueue, code: int, **ext: int) -> int:
        addr = self.instance.broker_addrs().get(mq.broker_name, {}).get(0)
        if addr is None:
            return -1
        fields = {
            "topic": mq.topic,
            "queueId": str(mq.queue_id),
            **{k: str(v) for k, v in ext.items()},
        }
        resp = await self.instance.invoke(addr, RemotingCommand(code, ext_fields=fields))
        return int(resp.ext_fields.get("offset", "-1")) if resp.code == ResponseCode.SUCCESS else -1

    # -- pulling ----------------------------------------------------------------------------------

    async def _pull_loop(self, mq: MessageQueue, pq: ProcessQueue, offset: int) -> None:
        sub = self.subscriptions[mq.topic]
        clustering = self.message_model == "CLUSTERING"
        while self.running and not pq.dropped:
            if pq.count >= self.pull_threshold or pq.bytes >= self.pull_threshold_bytes:
                await asyncio.sleep(0.05)  # flow control: the handlers are behind
                continue
            addr = self.instance.broker_addrs().get(mq.broker_name, {}).get(0)
            if addr is None:
                await asyncio.sleep(PULL_ERROR_BACKOFF_S)
                continue
            commit = self.offsets.table.get(mq, -1) if clustering else -1  # type: ignore[attr-defined]
            sys_flag = 0x2 | 0x4 | (0x1 if commit > 0 else 0)
            cmd = RemotingCommand(RequestCode.PULL_MESSAGE, ext_fields={
                "consumerGroup": self.group, "topic": mq.topic, "queueId": str(mq.queue_id),
                "queueOffset": str(offset), "maxMsgNums": str(self.pull_batch_size),
                "sysFlag": str(sys_flag), "commitOffset": str(max(commit, 0)),
                "suspendTimeoutMillis": str(PULL_SUSPEND_MS), "subscription": sub.sub_string,
                "subVersion": str(sub.sub_version), "expressionType": sub.expression_type,
            })  # fmt: skip
            try:
                resp = await self.instance.invoke(addr, cmd, PULL_SUSPEND_MS + 5_000)
            except RemotingError as exc:
                log.warning("pull of %s from %s failed: %s", mq, addr, exc)
                await asyncio.sleep(PULL_ERROR_BACKOFF_S)
                continue
            if pq.dropped:
                return
            next_offset = int(resp.ext_fields.get("nextBeginOffset", offset))
            if resp.code == ResponseCode.SUCCESS:
                try:
                    found = decode_records(resp.body)
                except CorruptRecordError as exc:
                    log.error("pull of %s returned a corrupt record (%s); skipping it", mq, exc)
                    found = []
                msgs = [m for m in found if sub.matches_tag(m.tags)]
                offset = next_offset
                if msgs:
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
        while True:
            mq, pq, batch = await self._work.get()
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
        level = ctx.delay_level_when_next_consume
        if result is not ConsumeResult.SUCCESS:
            return [(m, level) for m in batch]
        if ctx.failed is not None:
            return [(batch[i], lv) for i, lv in sorted(ctx.failed.items()) if 0 <= i < len(batch)]
        return [(m, level) for m in batch[max(-1, ctx.ack_index) + 1 :]]

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
        done = [m for m in batch if m not in keep]
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
        maximum, moves it to the DLQ)."""
        addr = self.instance.broker_addrs().get(mq.broker_name, {}).get(0)
        if addr is None:
            return False
        try:
            resp = await self.instance.invoke(addr, RemotingCommand(
                RequestCode.CONSUMER_SEND_MSG_BACK,
                ext_fields={"offset": str(m.commit_log_offset), "group": self.group,
                            "delayLevel": str(delay_level), "originMsgId": m.msg_id,
                            "originTopic": m.topic,
                            "maxReconsumeTimes": str(self.max_reconsume_times)},
            ))  # fmt: skip
        except RemotingError:
            return False
        return resp.code == ResponseCode.SUCCESS
