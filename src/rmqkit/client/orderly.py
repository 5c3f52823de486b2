"""ORDERLY consumption for the PushConsumer (RocketMQ `ConsumeMessageOrderlyService`).

In CLUSTERING mode a queue is consumed only while this consumer holds its lock on the broker
(LOCK_BATCH_MQ, renewed on every rebalance, released with UNLOCK_BATCH_MQ), so one member of the
group at a time reads it. Each queue has its own sequential consumer: messages are handed to the
handler in queue order, and a failure suspends the queue for `suspend_current_queue_time_ms` and
retries the same messages, so nothing behind them overtakes them. After `max_reconsume_times`
local attempts a message goes to the dead-letter queue and the queue moves on.

Locks live on the master only (RocketMQ's lockBatchMQ asks the master, onlyThisBroker=true): while
a broker's master is down its queues cannot be locked, the next rebalance stops reading them, and
ORDERLY consumption of that broker pauses until the master is back (a CONCURRENTLY consumer goes
on reading from the slave).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from typing import TYPE_CHECKING

import orjson

from rmqkit.client.message import MessageQueue
from rmqkit.client.process_queue import ProcessQueue
from rmqkit.errors import RemotingError
from rmqkit.protocol.codes import RequestCode, ResponseCode
from rmqkit.protocol.command import RemotingCommand
from rmqkit.protocol.record import StoredMessage
from rmqkit.protocol.route import MASTER_ID

if TYPE_CHECKING:
    from rmqkit.client.push_consumer import PushConsumer

log = logging.getLogger("rmqkit.consumer.orderly")


class OrderlySupport:
    """Locks and per-queue sequential consumption for one PushConsumer."""

    def __init__(self, consumer: PushConsumer, suspend_ms: int) -> None:
        self.consumer = consumer
        self.suspend_s = suspend_ms / 1000
        self._queues: dict[MessageQueue, asyncio.Queue[list[StoredMessage]]] = {}
        self._tasks: dict[MessageQueue, asyncio.Task[None]] = {}

    # -- locks ------------------------------------------------------------------------------------

    async def _lock_call(self, code: int, mqs: list[MessageQueue]) -> set[MessageQueue]:
        c = self.consumer
        by_broker: dict[str, list[MessageQueue]] = defaultdict(list)
        for mq in mqs:
            by_broker[mq.broker_name].append(mq)
        granted: set[MessageQueue] = set()
        for broker, queues in by_broker.items():
            master = c.instance.find_broker_addr(broker, MASTER_ID, only_this=True)
            if master is None:
                log.info("%s: %s has no master now; its queues stay unlocked", c.group, broker)
                continue
            addr = master.addr
            body = orjson.dumps({
                "consumerGroup": c.group, "clientId": c.instance.client_id, "onlyThisBroker": True,
                "mqSet": [{"topic": q.topic, "brokerName": q.broker_name, "queueId": q.queue_id}
                          for q in queues],
            })  # fmt: skip
            try:
                resp = await c.instance.invoke(addr, RemotingCommand(code, body=body))
            except RemotingError as exc:
                log.warning("%s: lock request to %s failed: %s", c.group, addr, exc)
                c.instance.refresh_route_soon(queues[0].topic)
                continue
            if code == RequestCode.LOCK_BATCH_MQ and resp.code == ResponseCode.SUCCESS:
                for q in orjson.loads(resp.body).get("lockOKMQSet", []):
                    granted.add(MessageQueue(q["topic"], q["brokerName"], int(q["queueId"])))
        return granted

    async def lock(self, mqs: list[MessageQueue]) -> set[MessageQueue]:
        """The queues of `mqs` now locked for this consumer (all of them when broadcasting);
        never those of a broker whose master is down (locks are the master's)."""
        if self.consumer.message_model == "BROADCASTING" or not mqs:
            return set(mqs)
        return await self._lock_call(RequestCode.LOCK_BATCH_MQ, mqs)

    async def unlock(self, mqs: list[MessageQueue]) -> None:
        if self.consumer.message_model == "CLUSTERING" and mqs:
            await self._lock_call(RequestCode.UNLOCK_BATCH_MQ, mqs)

    # -- consumption ------------------------------------------------------------------------------

    def start_queue(self, mq: MessageQueue, pq: ProcessQueue) -> None:
        self.stop_queue(mq)
        q: asyncio.Queue[list[StoredMessage]] = asyncio.Queue()
        self._queues[mq] = q
        self._tasks[mq] = asyncio.get_running_loop().create_task(self._consume(mq, pq, q))

    def stop_queue(self, mq: MessageQueue) -> None:
        self._queues.pop(mq, None)
        task = self._tasks.pop(mq, None)
        if task is not None:
            task.cancel()

    def submit(self, mq: MessageQueue, msgs: list[StoredMessage]) -> None:
        q = self._queues.get(mq)
        if q is not None:
            size = self.consumer.batch_max
            for i in range(0, len(msgs), size):
                q.put_nowait(msgs[i : i + size])

    async def drain(self, timeout_s: float) -> None:
        """Let queued batches finish (graceful stop), then cancel the queue consumers."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                await asyncio.gather(*(q.join() for q in self._queues.values()))
        for mq in list(self._tasks):
            self.stop_queue(mq)

    async def _consume(
        self, mq: MessageQueue, pq: ProcessQueue, q: asyncio.Queue[list[StoredMessage]]
    ) -> None:
        c = self.consumer
        while True:
            batch = await q.get()
            try:
                while not pq.dropped:
                    failed = await c.call_handler(mq, batch)
                    if not failed:
                        break
                    if all(level < 0 for _, level in failed):
                        for m, _ in failed:  # the handler gave up on them: dead-letter, go on
                            if not await c.send_back(m, mq, delay_level=-1):
                                log.error("%s: could not dead-letter %s", c.group, m.msg_id)
                        break
                    for m in batch:
                        m.reconsume_times += 1
                    if all(m.reconsume_times > c.max_reconsume_times for m in batch):
                        for m in batch:  # out of attempts: dead-letter them and move on
                            if not await c.send_back(m, mq, delay_level=-1):
                                log.error("%s: could not dead-letter %s", c.group, m.msg_id)
                        break
                    await asyncio.sleep(self.suspend_s)  # suspend the queue, then retry in order
                if not pq.dropped:
                    commit = pq.remove(batch)
                    if commit >= 0:
                        c.offsets.update(mq, commit)
            finally:
                q.task_done()
