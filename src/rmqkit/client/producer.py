"""Producer: sends messages to RocketMQ brokers over the remoting protocol (RocketMQ
`DefaultMQProducer`), natively on asyncio.

A send finds the topic's route (cached, refreshed every 30 s, and again after a failure), picks a
queue round-robin away from brokers that just failed, and retries on another broker for
`retry_times_when_send_failed` more attempts when the failure is one RocketMQ retries
(a timeout, a lost connection, SYSTEM_ERROR, SERVICE_NOT_AVAILABLE, TOPIC_NOT_EXIST, ...).
"""

from __future__ import annotations

import asyncio
import logging
import time
import zlib
from dataclasses import replace
from functools import partial

from rmqkit.client.instance import ClientConfig, ClientInstance
from rmqkit.client.message import Message, MessageQueue, SendResult, SendStatus
from rmqkit.client.namespace import unwrap, wrap, wrap_queue
from rmqkit.client.publish import FaultTracker, PublishInfo
from rmqkit.client.request import is_reply, new_correlation_id
from rmqkit.client.trace import AccessChannel, trace_dispatcher
from rmqkit.client.uniq_id import new_uniq_id
from rmqkit.common.hashing import java_string_hash
from rmqkit.common.lifecycle import AsyncLifecycle
from rmqkit.common.names import DEFAULT_TOPIC, topic_problem
from rmqkit.common.properties import Prop
from rmqkit.errors import (
    BrokerResponseError,
    MessageIllegalError,
    RemotingError,
    TopicNotExistError,
    error_for_code,
)
from rmqkit.protocol.acl import SessionCredentials
from rmqkit.protocol.batch import BatchEntry, encode_batch
from rmqkit.protocol.codes import COMPRESSION_ZLIB, RequestCode, ResponseCode, SysFlag
from rmqkit.protocol.command import RemotingCommand
from rmqkit.protocol.record import StoredMessage
from rmqkit.remoting.connection import Connection
from rmqkit.remoting.tls import ClientTls

log = logging.getLogger("rmqkit.producer")

RETRY_CODES = frozenset(
    {
        ResponseCode.TOPIC_NOT_EXIST,
        ResponseCode.SERVICE_NOT_AVAILABLE,
        ResponseCode.SYSTEM_ERROR,
        ResponseCode.SYSTEM_BUSY,
        ResponseCode.NO_PERMISSION,
        ResponseCode.NO_BUYER_ID,
        ResponseCode.NOT_IN_CURRENT_UNIT,
    }
)
"""Broker answers after which RocketMQ's producer tries another broker."""

_SEND = RequestCode.SEND_MESSAGE_V2
_SEND_REPLY = RequestCode.SEND_REPLY_MESSAGE_V2
_UNIQ_KEY = Prop.UNIQ_CLIENT_MESSAGE_ID_KEYIDX
_COMPRESSED_ZLIB = int(SysFlag.COMPRESSED | COMPRESSION_ZLIB)
_PREPARED = int(SysFlag.TRANSACTION_PREPARED)
_STATUS = {
    ResponseCode.SUCCESS: SendStatus.SEND_OK,
    ResponseCode.FLUSH_DISK_TIMEOUT: SendStatus.FLUSH_DISK_TIMEOUT,
    ResponseCode.FLUSH_SLAVE_TIMEOUT: SendStatus.FLUSH_SLAVE_TIMEOUT,
    ResponseCode.SLAVE_NOT_AVAILABLE: SendStatus.SLAVE_NOT_AVAILABLE,
}


class Producer(AsyncLifecycle):
    """Sends messages for one producer group.

    Args:
        group: the producer group (transaction check-backs go to a live member of it).
        namesrv_addr: NameServers, `host:port;host:port`.
        send_timeout_ms: how long one attempt waits for the broker.
        retry_times_when_send_failed: more attempts, on other brokers, for `send`.
        retry_times_when_send_async_failed: the same for `send_async`.
        retry_another_broker_when_not_store_ok: `send` also tries another broker when a broker
            stored the message but could not confirm it (FLUSH_DISK_TIMEOUT,
            FLUSH_SLAVE_TIMEOUT, SLAVE_NOT_AVAILABLE), as RocketMQ's option of that name does;
            the last result is returned when every attempt ends so. The message may then be
            stored more than once.
        compress_msg_body_over_bytes: bodies at least this large are zlib-compressed.
        max_message_size_bytes: larger bodies are refused before sending.
        default_topic_queue_nums: queues a topic gets when the first send creates it.
        namespace: send to `<namespace>%<topic>` as `<namespace>%<group>` (see
            `rmqkit.client.namespace`); results name the topic without it.
        enable_msg_trace: record where each sent message went in RocketMQ's trace topic (see
            `rmqkit.client.trace`).
        trace_topic: the trace topic (Spring's `customizedTraceTopic`); None: RMQ_SYS_TRACE_TOPIC.
        access_channel: "CLOUD" sends traces to the broker region's topic,
            `rmq_sys_TRACE_DATA_<regionId>`, as clients of Alibaba Cloud's RocketMQ do.
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
        instance_name: str = "DEFAULT",
        send_timeout_ms: int = 3_000,
        retry_times_when_send_failed: int = 2,
        retry_times_when_send_async_failed: int = 2,
        retry_another_broker_when_not_store_ok: bool = False,
        compress_msg_body_over_bytes: int = 4 * 1024,
        max_message_size_bytes: int = 4 * 1024 * 1024,
        default_topic_queue_nums: int = 4,
        create_topic_key: str = DEFAULT_TOPIC,
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
            enable_msg_trace, self.instance, lambda: self._started, trace_topic, access_channel
        )
        self.send_timeout_ms = send_timeout_ms
        self.retries = retry_times_when_send_failed
        self.async_retries = retry_times_when_send_async_failed
        self.retry_not_store_ok = retry_another_broker_when_not_store_ok
        self.compress_over = compress_msg_body_over_bytes
        self.max_message_size = max_message_size_bytes
        self.default_topic_queue_nums = default_topic_queue_nums
        self._queue_nums = str(default_topic_queue_nums)
        self.create_topic_key = create_topic_key
        self.faults = FaultTracker()
        self._publish: dict[str, PublishInfo] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._topics_ok: set[str] = set()
        """Topic names already found legal (`_check`)."""
        self._started = False

    # -- lifecycle --------------------------------------------------------------------------------

    async def start(self) -> None:
        if self._started:
            return
        self.instance.producer_groups.add(self.group)
        await self.instance.start()
        self._started = True

    async def stop(self) -> None:
        if not self._started:
            return
        self._started = False
        self.instance.producer_groups.discard(self.group)
        for addr in {a for info in self._publish.values() for a in info.master_addrs.values()}:
            try:
                await self.instance.invoke(addr, RemotingCommand(
                    RequestCode.UNREGISTER_CLIENT,
                    ext_fields={"clientID": self.instance.client_id, "producerGroup": self.group},
                ), 1_000)  # fmt: skip
            except RemotingError:
                pass
        await self.instance.stop()

    # -- routes -----------------------------------------------------------------------------------

    async def publish_info(self, topic: str, *, refresh: bool = False) -> PublishInfo:
        """Where `topic` can be sent; through the TBW102 template when no broker has it yet."""
        if not refresh and topic in self._publish:
            return self._publish[topic]
        lock = self._locks.setdefault(topic, asyncio.Lock())
        async with lock:  # concurrent first sends share one lookup and one round-robin counter
            if not refresh and topic in self._publish:
                return self._publish[topic]
            return await self._lookup(topic, refresh)

    async def _lookup(self, topic: str, refresh: bool) -> PublishInfo:
        route = await self.instance.route(topic, refresh=refresh)
        if route is not None:
            info = PublishInfo.from_route(topic, route)
        else:
            template = await self.instance.route(self.create_topic_key, refresh=refresh)
            if template is None:
                raise TopicNotExistError(
                    f"no route for topic {topic!r}, and auto-creation through "
                    f"{self.create_topic_key} is off; create the topic first",
                    request="route lookup",
                )
            info = PublishInfo.from_route(topic, template, self.default_topic_queue_nums)
        if not info.queues:
            raise TopicNotExistError(f"topic {topic!r} has no writable queue on a live master")
        old = self._publish.get(topic)
        if old is not None:
            info.counter = old.counter
        self._publish[topic] = info
        return info

    # -- sending ----------------------------------------------------------------------------------

    def _in_namespace(self, msg: Message) -> Message:
        """`msg` with its topic in this producer's namespace (a copy; `msg` is not changed)."""
        topic = wrap(self.namespace, msg.topic)
        return msg if topic == msg.topic else replace(msg, topic=topic)

    def _check(self, msg: Message) -> None:
        if not self._started:
            from rmqkit.errors import ConfigurationError

            raise ConfigurationError(f"producer {self.group} is not started; call start() first")
        if msg.topic not in self._topics_ok:
            problem = topic_problem(msg.topic)
            if problem is not None:
                raise MessageIllegalError(problem, request="send")
            if len(self._topics_ok) >= 10_000:
                self._topics_ok.clear()
            self._topics_ok.add(msg.topic)  # a regex per send costs as much as the JSON header
        if not msg.body:
            raise MessageIllegalError("the message body is empty", request="send")
        if len(msg.body) > self.max_message_size:
            raise MessageIllegalError(
                f"the body is {len(msg.body)} bytes, max_message_size_bytes is "
                f"{self.max_message_size}",
                request="send",
            )

    def _command(
        self, msg: Message, queue: MessageQueue, info: PublishInfo, uniq: str
    ) -> RemotingCommand:
        body = msg.body
        sys_flag = 0
        if len(body) >= self.compress_over:
            body = zlib.compress(body, 5)
            sys_flag = _COMPRESSED_ZLIB
        user = msg.properties
        if user and user.get(Prop.TRANSACTION_PREPARED) == "true":
            sys_flag |= _PREPARED  # a half message (TransactionProducer)
        props = msg.encoded_properties({_UNIQ_KEY: uniq})
        # A reply (MSG_TYPE=reply) takes its own code, as RocketMQ's MQClientAPIImpl picks it.
        code = _SEND_REPLY if user and is_reply(msg) else _SEND
        # SendMessageRequestHeaderV2's one-letter names. Positional: cheaper than keywords.
        return RemotingCommand(code, 0, 0, None, {
            "a": self.group, "b": msg.topic, "c": self.create_topic_key, "d": self._queue_nums,
            "e": str(queue.queue_id), "f": str(sys_flag) if sys_flag else "0",
            "g": str(int(time.time() * 1000)), "h": str(msg.flag) if msg.flag else "0",
            "i": props, "j": "0", "k": "false", "m": "false", "n": queue.broker_name,
        }, body)  # fmt: skip

    async def send(
        self, msg: Message, *, queue: MessageQueue | None = None, timeout_ms: int | None = None
    ) -> SendResult:
        """Send and wait for the broker's answer; retries on another broker when that helps.

        Raises:
            MessageIllegalError: the message cannot be sent as it is.
            BrokerResponseError: the broker refused it (the subclass names the code).
            RemotingError: no broker answered.
        """
        if self.namespace:
            msg = self._in_namespace(msg)
            if queue is not None:
                queue = wrap_queue(self.namespace, queue)
        return await self._send(msg, queue, timeout_ms, self.retries, not_ok_retry=True)

    def send_async(
        self, msg: Message, *, timeout_ms: int | None = None
    ) -> asyncio.Future[SendResult]:
        """Start a send and return at once.

        When the topic's route is cached and its broker's connection is open (every send but
        the first, nearly), the request is written before this returns and the result is filled
        in by a callback on the response: no task per send. Otherwise, and for a retry after a
        failure (`retry_times_when_send_async_failed`, on another broker), a task does the work.

        Returns:
            A future (an `asyncio.Task` when a task does the send): await it, gather it or add
            a done callback for the `SendResult`, or the error `send` would raise.

        Raises:
            MessageIllegalError: the message cannot be sent as it is (raised here, at once).
        """
        if self.namespace:
            msg = self._in_namespace(msg)
        self._check(msg)
        loop = asyncio.get_running_loop()
        info = self._publish.get(msg.topic)
        if info is not None:
            q = info.select(self.faults)
            addr = info.master_addrs.get(q.broker_name)
            if addr is not None:
                conn = self.instance.remoting.cached(addr)
                if conn is not None:
                    return self._start_send(loop, conn, msg, q, info, addr, timeout_ms)
        return loop.create_task(self._send(msg, None, timeout_ms, self.async_retries, checked=True))

    def _start_send(
        self, loop: asyncio.AbstractEventLoop, conn: Connection, msg: Message, q: MessageQueue,
        info: PublishInfo, addr: str, timeout_ms: int | None,
    ) -> asyncio.Future[SendResult]:  # fmt: skip
        """The first attempt of `send_async` on an open connection, finished by `_on_response`."""
        out: asyncio.Future[SendResult] = loop.create_future()
        uniq = new_uniq_id()
        # As ClientInstance.invoke: the instance's request timeout when both are 0.
        ms = timeout_ms or self.send_timeout_ms or self.instance.config.request_timeout_ms
        try:
            cmd = self._command(msg, q, info, uniq)
            # The command only for the trace: otherwise it goes once it is written.
            traced = None if self.trace is None else cmd
            conn.send_request(
                cmd,
                ms / 1000,
                partial(self._on_response, out, msg, q, info, addr, uniq, timeout_ms, traced),
            )
        except RemotingError as exc:  # the connection closed under us: as a failed attempt
            self._attempt_failed(out, exc, msg, q, info, addr, uniq, timeout_ms)
        except Exception as exc:  # what the task would have ended with
            out.set_exception(exc)
        return out

    def _on_response(
        self, out: asyncio.Future[SendResult], msg: Message, q: MessageQueue, info: PublishInfo,
        addr: str, uniq: str, timeout_ms: int | None, cmd: RemotingCommand | None,
        reply: RemotingCommand | RemotingError,
    ) -> None:  # fmt: skip
        """Called by the connection as the response is read (or the wait ends)."""
        if out.done():  # the caller cancelled the send; the answer is of no use
            return
        try:
            if not isinstance(reply, RemotingCommand):
                raise reply
            result = self._result(reply, q, addr, uniq)
            if cmd is not None and self.trace is not None:
                result = self.trace.sent(self, msg, cmd, result)
        except (RemotingError, BrokerResponseError) as exc:
            self._attempt_failed(out, exc, msg, q, info, addr, uniq, timeout_ms)
        except Exception as exc:
            out.set_exception(exc)
        else:
            out.set_result(result)

    def _attempt_failed(
        self, out: asyncio.Future[SendResult], exc: RemotingError | BrokerResponseError,
        msg: Message, q: MessageQueue, info: PublishInfo, addr: str, uniq: str,
        timeout_ms: int | None,
    ) -> None:  # fmt: skip
        """The first attempt of `send_async` failed: fail `out`, or go on in a task."""
        if self._give_up(exc, q, 0, self.async_retries, None):
            out.set_exception(exc)
            return
        log.info("send to %s failed (%s); trying another broker", addr, exc)
        retry = asyncio.get_running_loop().create_task(
            self._retry(msg, info, uniq, timeout_ms, q.broker_name, exc)
        )
        _chain(retry, out)

    async def _retry(
        self, msg: Message, info: PublishInfo, uniq: str, timeout_ms: int | None,
        last_broker: str, last_error: Exception,
    ) -> SendResult:  # fmt: skip
        try:
            info = await self.publish_info(msg.topic, refresh=True)
        except (RemotingError, BrokerResponseError):
            pass
        return await self._attempts(
            msg, None, timeout_ms, self.async_retries, uniq, info, 1, last_broker, last_error
        )

    async def send_orderly(
        self, msg: Message, hash_key: str, *, timeout_ms: int | None = None
    ) -> SendResult:
        """Send to the queue chosen by `hash_key` (as Java's SelectMessageQueueByHash does), so
        every message with that key lands on one queue in order. Not retried elsewhere."""
        if self.namespace:
            msg = self._in_namespace(msg)
        self._check(msg)
        info = await self.publish_info(msg.topic)
        queue = info.queues[abs(java_string_hash(hash_key)) % len(info.queues)]
        return await self._send(msg, queue, timeout_ms, 0)

    async def send_oneway(self, msg: Message) -> None:
        """Send without waiting for any answer (no result, no retry)."""
        if self.namespace:
            msg = self._in_namespace(msg)
        self._check(msg)
        info = await self.publish_info(msg.topic)
        queue = info.select(self.faults)
        cmd = self._command(msg, queue, info, new_uniq_id())
        await self.instance.remoting.invoke_oneway(info.master_addrs[queue.broker_name], cmd)

    # -- request-reply (RocketMQ 4.6+; see rmqkit.client.request) ---------------------------------

    async def request(
        self, msg: Message, *, timeout_ms: int = 3_000, hash_key: str | None = None
    ) -> StoredMessage:
        """Send `msg` as a request and wait for the reply a consumer sends with `create_reply`.

        The request carries CORRELATION_ID, REPLY_TO_CLIENT (this client's id) and TTL
        (`timeout_ms`); the broker pushes the reply straight to this client. `msg` itself is
        not changed.

        Args:
            msg: the request.
            timeout_ms: for the send and the reply together.
            hash_key: send to the queue this key selects (as `send_orderly`), not round-robin.

        Returns:
            The reply; its properties hold CORRELATION_ID and the reply's user properties.

        Raises:
            RequestTimeoutError: the request was sent, but no reply came within `timeout_ms`.
            MessageIllegalError, BrokerResponseError, RemotingError: as for `send`.
        """
        if self.namespace:
            msg = self._in_namespace(msg)
        self._check(msg)
        begin = time.monotonic()
        cid = new_correlation_id()
        req = replace(msg, properties={**msg.properties, Prop.CORRELATION_ID: cid,
                      Prop.MESSAGE_REPLY_TO_CLIENT: self.instance.client_id,
                      Prop.MESSAGE_TTL: str(timeout_ms)})  # fmt: skip
        requests = self.instance.requests
        pending = requests.register(cid, timeout_ms, topic=msg.topic)
        try:
            # Looking the route up first greets its brokers with a heartbeat, so they know this
            # client's id when the reply comes (RocketMQ's prepareSendRequest does the same).
            await self.publish_info(msg.topic)
            left_ms = max(1, timeout_ms - int((time.monotonic() - begin) * 1000))
            if hash_key is None:
                await self.send(req, timeout_ms=left_ms)
            else:
                await self.send_orderly(req, hash_key, timeout_ms=left_ms)
            return await pending.future
        finally:
            requests.discard(cid)

    async def send_reply(self, reply: Message, *, timeout_ms: int | None = None) -> SendResult:
        """Send a reply made by `create_reply` (SEND_REPLY_MESSAGE_V2); the broker pushes it to
        the requester. Not retried: a requester that is gone stays gone.

        Raises:
            MessageIllegalError: `reply` was not made by `create_reply` (MSG_TYPE is not reply).
            BrokerResponseError: SYSTEM_ERROR when the requester is not connected to the broker.
            RemotingError: no broker answered.
        """
        if not is_reply(reply):
            raise MessageIllegalError(
                "send_reply takes a message made by create_reply (MSG_TYPE=reply)",
                request="send reply",
            )
        return await self._send(reply, None, timeout_ms, 0)

    async def _send(
        self, msg: Message, queue: MessageQueue | None, timeout_ms: int | None, retries: int,
        *, checked: bool = False, not_ok_retry: bool = False,
    ) -> SendResult:  # fmt: skip
        if not checked:
            self._check(msg)
        uniq = new_uniq_id()
        info = self._publish.get(msg.topic) or await self.publish_info(msg.topic)
        return await self._attempts(
            msg,
            queue,
            timeout_ms,
            retries,
            uniq,
            info,
            0,
            None,
            None,
            not_ok_retry=not_ok_retry and self.retry_not_store_ok,
        )

    async def _attempts(
        self, msg: Message, queue: MessageQueue | None, timeout_ms: int | None, retries: int,
        uniq: str, info: PublishInfo, first: int, last_broker: str | None,
        last_error: Exception | None, *, not_ok_retry: bool = False,
    ) -> SendResult:  # fmt: skip
        """Attempts `first`..`retries` of a send, each to another broker than the last failed;
        with `not_ok_retry`, a result other than SEND_OK counts as failed but for the last."""
        for attempt in range(first, 1 + retries):
            q = queue or info.select(self.faults, last_broker)
            addr = info.master_addrs.get(q.broker_name)
            if addr is None:
                info = await self.publish_info(msg.topic, refresh=True)
                continue
            try:
                cmd = self._command(msg, q, info, uniq)
                resp = await self.instance.invoke(addr, cmd, timeout_ms or self.send_timeout_ms)
                result = self._result(resp, q, addr, uniq)
                if self.trace is not None:
                    result = self.trace.sent(self, msg, cmd, result)
                if (
                    not_ok_retry
                    and result.status is not SendStatus.SEND_OK
                    and (queue is None and attempt < retries)
                ):
                    log.info("%s stored the message but answered %s; trying another broker",
                             addr, result.status.name)  # fmt: skip
                    last_broker = q.broker_name
                    continue
                return result
            except (RemotingError, BrokerResponseError) as exc:
                last_error, last_broker = exc, q.broker_name
                if self._give_up(exc, q, attempt, retries, queue):
                    raise
                log.info("send to %s failed (%s); trying another broker", addr, exc)
                try:
                    info = await self.publish_info(msg.topic, refresh=True)
                except (RemotingError, BrokerResponseError):
                    pass
        assert last_error is not None
        raise last_error

    def _give_up(
        self, exc: RemotingError | BrokerResponseError, q: MessageQueue, attempt: int,
        retries: int, queue: MessageQueue | None,
    ) -> bool:  # fmt: skip
        """Count a failed attempt against its broker; True when it is not to be retried."""
        self.faults.failed(q.broker_name)
        retriable = isinstance(exc, RemotingError) or exc.code in RETRY_CODES
        return not retriable or queue is not None or attempt == retries

    def _result(self, resp: RemotingCommand, q: MessageQueue, addr: str, uniq: str) -> SendResult:
        status = _STATUS.get(resp.code)  # type: ignore[call-overload]
        if status is None:
            raise error_for_code(resp.code)(resp.remark or "", addr=addr, request="send")
        self.faults.succeeded(q.broker_name)
        ext = resp.ext_fields
        qid = int(ext.get("queueId", q.queue_id))
        if self.namespace:
            queue = MessageQueue(unwrap(q.topic, self.namespace), q.broker_name, qid)
        else:
            queue = q if qid == q.queue_id else MessageQueue(q.topic, q.broker_name, qid)
        return SendResult(
            status, uniq, ext.get("msgId", ""), queue, int(ext.get("queueOffset", "-1")), addr,
            ext.get("MSG_REGION", ""),
        )  # fmt: skip

    async def send_batch(self, msgs: list[Message], *, timeout_ms: int | None = None) -> SendResult:
        """Send several messages of one topic in one request; they land together on one queue."""
        if not msgs:
            raise MessageIllegalError("an empty batch", request="send batch")
        if self.namespace:
            msgs = [self._in_namespace(m) for m in msgs]
        topic = msgs[0].topic
        for m in msgs:
            self._check(m)
            if m.topic != topic:
                raise MessageIllegalError(
                    "a batch holds messages of one topic", request="send batch"
                )
            if m.delay_level:
                raise MessageIllegalError(
                    "a batch cannot hold delayed messages", request="send batch"
                )
        uniqs = [new_uniq_id() for _ in msgs]
        uniq_key = Prop.UNIQ_CLIENT_MESSAGE_ID_KEYIDX
        body = encode_batch(
            [
                BatchEntry(m.body, m.encoded_properties({uniq_key: u}), m.flag)
                for m, u in zip(msgs, uniqs, strict=True)
            ]
        )
        if len(body) > self.max_message_size:
            raise MessageIllegalError(
                f"the batch is {len(body)} bytes, max_message_size_bytes is "
                f"{self.max_message_size}",
                request="send batch",
            )
        info = await self.publish_info(topic)
        last_broker: str | None = None
        for attempt in range(1 + self.retries):
            q = info.select(self.faults, last_broker)
            addr = info.master_addrs[q.broker_name]
            cmd = RemotingCommand(
                RequestCode.SEND_BATCH_MESSAGE,
                ext_fields={
                    "a": self.group, "b": topic, "c": self.create_topic_key,
                    "d": str(self.default_topic_queue_nums), "e": str(q.queue_id), "f": "0",
                    "g": str(int(time.time() * 1000)), "h": "0", "i": "", "j": "0", "k": "false",
                    "m": "true", "n": q.broker_name,
                },
                body=body,
            )  # fmt: skip
            try:
                resp = await self.instance.invoke(addr, cmd, timeout_ms or self.send_timeout_ms)
                result = self._result(resp, q, addr, ",".join(uniqs))
                return result
            except (RemotingError, BrokerResponseError) as exc:
                self.faults.failed(q.broker_name)
                last_broker = q.broker_name
                retriable = isinstance(exc, RemotingError) or exc.code in RETRY_CODES
                if not retriable or attempt == self.retries:
                    raise
        raise AssertionError("unreachable")


def _chain(task: asyncio.Task[SendResult], out: asyncio.Future[SendResult]) -> None:
    """`out` gets what `task` ends with; cancelling `out` cancels `task`."""

    def copy(t: asyncio.Task[SendResult]) -> None:
        if out.done():
            if not t.cancelled():
                t.exception()  # retrieved: nobody waits for it any more
        elif t.cancelled():
            out.cancel()
        elif (exc := t.exception()) is not None:
            out.set_exception(exc)
        else:
            out.set_result(t.result())

    def cancel(o: asyncio.Future[SendResult]) -> None:
        if o.cancelled():
            task.cancel()

    task.add_done_callback(copy)
    out.add_done_callback(cancel)
