"""Producers of an in-memory broker, with the methods of `rmqkit.client.Producer` and
`TransactionProducer` (RocketMQ `DefaultMQProducer`, `TransactionMQProducer`).

They check a message as the real producer does, pick a queue the same way (round-robin, or
`abs(java_string_hash(hash_key)) % queues` for `send_orderly`), and encode tags, keys and
properties with `Message.encoded_properties`, so what a consumer receives matches the real thing.
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
import logging
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from rmqkit.client.message import Message, MessageQueue, SendResult, SendStatus
from rmqkit.client.request import is_reply, new_correlation_id
from rmqkit.client.transaction import (
    Checker,
    Execute,
    TransactionSendResult,
    TransactionState,
)
from rmqkit.client.uniq_id import new_uniq_id
from rmqkit.common.hashing import java_string_hash
from rmqkit.common.lifecycle import AsyncLifecycle
from rmqkit.common.names import topic_problem
from rmqkit.common.properties import Prop, decode_properties
from rmqkit.errors import ConfigurationError, MessageIllegalError, SystemError_
from rmqkit.protocol.codes import SysFlag
from rmqkit.protocol.record import StoredMessage, format_host
from rmqkit.testing.memory.consumer import client_id
from rmqkit.testing.memory.store import STORE_HOST, Draft

if TYPE_CHECKING:
    from rmqkit.testing.memory.broker import MemoryBroker

log = logging.getLogger("rmqkit.testing.memory")
_DELAYS = (Prop.DELAY_TIME_LEVEL, Prop.TIMER_DELIVER_MS, Prop.TIMER_DELAY_MS, Prop.TIMER_DELAY_SEC)


class MemoryProducer(AsyncLifecycle):
    """Sends to a `MemoryBroker` for one producer group.

    Args:
        broker: where messages go.
        group: the producer group (transaction check-backs go to a started member of it).
        instance_name: part of the client id.
        max_message_size_bytes: larger bodies are refused, as by the real producer.
        **options: the real producer's other options (timeouts, retries, compression), accepted
            and ignored.
    """

    def __init__(
        self,
        broker: MemoryBroker,
        group: str,
        *,
        instance_name: str = "DEFAULT",
        max_message_size_bytes: int = 4 * 1024 * 1024,
        **options: Any,
    ) -> None:
        self.broker = broker
        self.group = group
        self.client_id = client_id(instance_name)
        self.max_message_size = max_message_size_bytes
        self._counters: dict[str, itertools.count[int]] = {}
        self._started = False

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.group!r}, {self.client_id!r})"

    async def start(self) -> None:
        """Join the broker (a requester must be started for its replies to reach it)."""
        self._started = True
        self.broker.producer_started(self)

    async def stop(self) -> None:
        """Leave the broker; sends fail until the next start."""
        self._started = False
        self.broker.producer_stopped(self)

    # -- checks and queues ------------------------------------------------------------------------

    def _check(self, msg: Message, request: str = "send") -> None:
        if not self._started:
            raise ConfigurationError(f"producer {self.group} is not started; call start() first")
        problem = topic_problem(msg.topic)
        if problem is not None:
            raise MessageIllegalError(problem, request=request)
        if not msg.body:
            raise MessageIllegalError("the message body is empty", request=request)
        if len(msg.body) > self.max_message_size:
            raise MessageIllegalError(
                f"the body is {len(msg.body)} bytes, max_message_size_bytes is "
                f"{self.max_message_size}",
                request=request,
            )

    def _round_robin(self, topic: str) -> int:
        n = len(self.broker.store.ensure_topic(topic))
        return next(self._counters.setdefault(topic, itertools.count())) % n

    def _draft(self, msg: Message, queue_id: int, uniq: str) -> Draft:
        props = decode_properties(
            msg.encoded_properties({Prop.UNIQ_CLIENT_MESSAGE_ID_KEYIDX: uniq})
        )
        props[Prop.CLUSTER] = self.broker.cluster_name  # the broker adds it to every message
        sys_flag = 0
        if props.get(Prop.TRANSACTION_PREPARED) == "true":
            sys_flag |= SysFlag.TRANSACTION_PREPARED
        return Draft(msg.topic, queue_id, msg.body, props, msg.flag, sys_flag,
                     self.broker.clock.now_ms())  # fmt: skip

    def _result(self, msg: Message, stored: StoredMessage, uniq: str, qid: int) -> SendResult:
        return SendResult(
            SendStatus.SEND_OK, uniq, stored.offset_msg_id,
            MessageQueue(msg.topic, self.broker.broker_name, qid), stored.queue_offset,
            format_host(STORE_HOST),
        )  # fmt: skip

    async def _send(self, msg: Message, queue_id: int | None) -> SendResult:
        self._check(msg)
        await asyncio.sleep(0)  # a send is a network round trip: let other tasks run
        if is_reply(msg):
            qid = 0
        elif queue_id is None:
            qid = self._round_robin(msg.topic)
        else:
            qid = queue_id
            n = len(self.broker.store.ensure_topic(msg.topic))
            if not 0 <= qid < n:
                raise SystemError_(
                    f"request queueId[{qid}] is illegal, topic {msg.topic} has {n} write queues",
                    request="send",
                )
        uniq = new_uniq_id()
        stored = self.broker.accept(self._draft(msg, qid, uniq), uniq)
        return self._result(msg, stored, uniq, qid)

    # -- sends ------------------------------------------------------------------------------------

    async def send(
        self, msg: Message, *, queue: MessageQueue | None = None, timeout_ms: int | None = None
    ) -> SendResult:
        """Store `msg` (round-robin over its topic's queues, or in `queue`).

        Raises:
            ConfigurationError: the producer is not started.
            MessageIllegalError: the message cannot be sent as it is.
            SystemError_: a reply whose requester is gone.
        """
        return await self._send(msg, None if queue is None else queue.queue_id)

    async def send_orderly(
        self, msg: Message, hash_key: str, *, timeout_ms: int | None = None
    ) -> SendResult:
        """Store `msg` in the queue `hash_key` selects, as `Producer.send_orderly` does."""
        self._check(msg)
        n = len(self.broker.store.ensure_topic(msg.topic))
        return await self._send(msg, abs(java_string_hash(hash_key)) % n)

    async def send_oneway(self, msg: Message) -> None:
        """Store `msg`; no result."""
        await self._send(msg, None)

    async def send_reply(self, reply: Message, *, timeout_ms: int | None = None) -> SendResult:
        """Send a reply made by `create_reply` to the requester waiting for it.

        Raises:
            MessageIllegalError: `reply` was not made by `create_reply`.
            SystemError_: the requester is not connected (not a started producer) any more.
        """
        if not is_reply(reply):
            raise MessageIllegalError(
                "send_reply takes a message made by create_reply (MSG_TYPE=reply)",
                request="send reply",
            )
        return await self._send(reply, 0)

    async def send_batch(self, msgs: list[Message], *, timeout_ms: int | None = None) -> SendResult:
        """Store messages of one topic together in one queue, all or none.

        Raises:
            MessageIllegalError: an empty batch, several topics, a delayed or transactional
                message, or one that fails the checks of `send`.
        """
        if not msgs:
            raise MessageIllegalError("an empty batch", request="send batch")
        topic = msgs[0].topic
        for m in msgs:
            self._check(m, "send batch")
            if m.topic != topic:
                raise MessageIllegalError(
                    "a batch holds messages of one topic", request="send batch"
                )
            if m.delay_level or any(k in m.properties for k in _DELAYS):
                raise MessageIllegalError(
                    "a batch cannot hold delayed messages", request="send batch"
                )
            if m.properties.get(Prop.TRANSACTION_PREPARED) == "true":
                raise MessageIllegalError("a batch cannot be transactional", request="send batch")
        await asyncio.sleep(0)
        qid = self._round_robin(topic)
        uniqs = [new_uniq_id() for _ in msgs]
        stored = [
            self.broker.accept(self._draft(m, qid, u), u) for m, u in zip(msgs, uniqs, strict=True)
        ]
        return SendResult(
            SendStatus.SEND_OK, ",".join(uniqs), ",".join(s.offset_msg_id for s in stored),
            MessageQueue(topic, self.broker.broker_name, qid), stored[0].queue_offset,
            format_host(STORE_HOST),
        )  # fmt: skip

    async def request(
        self, msg: Message, *, timeout_ms: int = 3_000, hash_key: str | None = None
    ) -> StoredMessage:
        """Send `msg` as a request and wait for the reply a listener sends with `create_reply`.

        Raises:
            RequestTimeoutError: no reply before the fake clock passed the deadline, or within
                `timeout_ms` of real time.
        """
        self._check(msg)
        cid = new_correlation_id()
        req = replace(msg, properties={**msg.properties, Prop.CORRELATION_ID: cid,
                      Prop.MESSAGE_REPLY_TO_CLIENT: self.client_id,
                      Prop.MESSAGE_TTL: str(timeout_ms)})  # fmt: skip
        waiter = self.broker.replies.register(
            cid, timeout_ms, msg.topic, self.broker.clock.now_ms()
        )
        try:
            if hash_key is None:
                await self.send(req)
            else:
                await self.send_orderly(req, hash_key)
            return await waiter.future
        finally:
            self.broker.replies.discard(cid)


class MemoryTransactionProducer(MemoryProducer):
    """A producer whose sends are tied to local transactions.

    Args:
        checker: answers the broker's check-back for a half message left UNKNOWN.
        (the other arguments are `MemoryProducer`'s)
    """

    def __init__(self, broker: MemoryBroker, group: str, *, checker: Checker, **options: Any):
        super().__init__(broker, group, **options)
        self.checker = checker

    async def send_in_transaction(self, msg: Message, execute: Execute) -> TransactionSendResult:
        """Store `msg` as a half message, run `execute(msg, send_result)`, then commit or roll
        back (UNKNOWN leaves it to the check-back). An exception in `execute` rolls back and is
        re-raised."""
        msg.properties[Prop.TRANSACTION_PREPARED] = "true"
        msg.properties[Prop.PRODUCER_GROUP] = self.group
        sent = await self.send(msg)
        try:
            state = execute(msg, sent)
            if inspect.isawaitable(state):
                state = await state
            if not isinstance(state, TransactionState):
                raise TypeError(f"a transaction step must return a TransactionState, not {state!r}")
        except Exception:
            self.broker.end_transaction(sent.msg_id, TransactionState.ROLLBACK)
            raise
        self.broker.end_transaction(sent.msg_id, state)
        return TransactionSendResult(sent, state)
