"""Message trace, as RocketMQ's Java client writes it (`TraceContext`, `TraceBean`,
`TraceDataEncoder`, `AsyncTraceDispatcher`), so rocketmq-dashboard and `mqadmin
queryMsgTraceById` read rmqkit's traces and `AdminClient.query_trace` reads theirs.

A Producer or PushConsumer made with `enable_msg_trace=True` records a context per send (Pub)
and two per consume (SubBefore, SubAfter, paired by a request id). The `TraceDispatcher` queues
them without waiting and sends them in batches, off the send and consume paths, as ordinary
messages to `RMQ_SYS_TRACE_TOPIC` whose KEYS are the traced message ids (and their keys), so a
query by key in the trace topic finds every record of a message. Records are text: fields end
with CONTENT_SPLITOR (\\x01) inside a record, records end with FIELD_SPLITOR (\\x02)::

    Pub            type time region group topic msgId tags keys storeHost bodyLength costTime
                   msgType offsetMsgId success [clientHost]
    SubBefore      type time region group requestId msgId retryTimes keys
    SubAfter       type requestId msgId costTime success keys [contextCode [time]]
    EndTransaction type time region group topic msgId tags keys storeHost msgType transactionId
                   transactionState fromTransactionCheck

Missing tags or keys are written `null`, as Java's StringBuilder writes a null String.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from enum import Enum, IntEnum
from typing import TYPE_CHECKING, Any, Literal

from rmqkit.client.publish import FaultTracker, PublishInfo
from rmqkit.client.uniq_id import local_ip, new_uniq_id
from rmqkit.common.names import DEFAULT_TOPIC
from rmqkit.common.properties import KEY_SEPARATOR, Prop, encode_properties
from rmqkit.errors import RemotingError, TopicNotExistError, error_for_code
from rmqkit.protocol.codes import RequestCode, ResponseCode
from rmqkit.protocol.command import RemotingCommand
from rmqkit.protocol.record import StoredMessage, format_host

if TYPE_CHECKING:
    from rmqkit.client.instance import ClientInstance
    from rmqkit.client.message import Message, SendResult
    from rmqkit.client.producer import Producer
    from rmqkit.client.push_consumer import ConsumeContext, ConsumeResult, PushConsumer

log = logging.getLogger("rmqkit.trace")

TRACE_TOPIC = "RMQ_SYS_TRACE_TOPIC"
"""RocketMQ's `TopicValidator.RMQ_SYS_TRACE_TOPIC`: where traces go unless told otherwise."""
CLOUD_TRACE_TOPIC_PREFIX = "rmq_sys_TRACE_DATA_"
"""With `access_channel="CLOUD"`, traces go to this prefix + the region of the broker that
stored the message (`TraceConstants.TRACE_TOPIC_PREFIX`), as on Alibaba Cloud."""
AccessChannel = Literal["LOCAL", "CLOUD"]
TRACE_GROUP = "_INNER_TRACE_PRODUCER"
CONTENT_SPLITOR = "\x01"
FIELD_SPLITOR = "\x02"
NULL = "null"
MAX_MSG_SIZE = 128_000 - 10_000
"""Trace data per trace message, as `AsyncTraceDispatcher` (maxMsgSize - 10 * 1000)."""
QUEUE_SIZE = 1024
BATCH_SIZE = 100
GATHER_S = 0.005
"""How long a drain waits for more contexts before sending the first batch."""


class TraceType(Enum):
    Pub = "Pub"
    SubBefore = "SubBefore"
    SubAfter = "SubAfter"
    EndTransaction = "EndTransaction"


class MessageType(IntEnum):
    """RocketMQ's `MessageType`; the trace records the ordinal."""

    Normal_Msg = 0
    Trans_Msg_Half = 1
    Trans_msg_Commit = 2
    Delay_Msg = 3


class ConsumeReturnType(IntEnum):
    """RocketMQ's `ConsumeReturnType`: a SubAfter's context code."""

    SUCCESS = 0
    TIME_OUT = 1
    EXCEPTION = 2
    RETURNNULL = 3
    FAILED = 4


@dataclass(slots=True)
class TraceBean:
    """One message in a trace context."""

    topic: str = ""
    msg_id: str = ""
    offset_msg_id: str = ""
    tags: str | None = None
    keys: str | None = None
    store_host: str = ""
    client_host: str = ""
    body_length: int = 0
    retry_times: int = 0
    msg_type: MessageType = MessageType.Normal_Msg
    transaction_id: str = ""
    transaction_state: str = ""
    from_transaction_check: bool = False


@dataclass(slots=True)
class TraceContext:
    """One trace record (a SubBefore or SubAfter may name several messages: one record each)."""

    trace_type: TraceType
    timestamp: int = field(default_factory=lambda: int(time.time() * 1000))
    region_id: str = ""
    group: str = ""
    cost_time: int = 0
    success: bool = True
    request_id: str = field(default_factory=new_uniq_id)
    context_code: int = 0
    beans: list[TraceBean] = field(default_factory=list)


def _s(v: str | None) -> str:
    return NULL if v is None else v


def _opt(v: str) -> str | None:
    return None if v in ("", NULL) else v


def encode_context(ctx: TraceContext) -> tuple[str, list[str]]:
    """The record text of a context and the keys its trace message is found by."""
    c, f = CONTENT_SPLITOR, FIELD_SPLITOR
    t = ctx.trace_type.value
    parts: list[str] = []
    one = ctx.trace_type in (TraceType.Pub, TraceType.EndTransaction)
    for b in ctx.beans[:1] if one else ctx.beans:
        if ctx.trace_type is TraceType.Pub:
            fields = [t, ctx.timestamp, ctx.region_id, ctx.group, b.topic, b.msg_id, _s(b.tags),
                      _s(b.keys), b.store_host, b.body_length, ctx.cost_time, int(b.msg_type),
                      b.offset_msg_id, _bool(ctx.success)]  # fmt: skip
        elif ctx.trace_type is TraceType.SubBefore:
            fields = [t, ctx.timestamp, ctx.region_id, ctx.group, ctx.request_id, b.msg_id,
                      b.retry_times, _s(b.keys)]  # fmt: skip
        elif ctx.trace_type is TraceType.SubAfter:
            fields = [t, ctx.request_id, b.msg_id, ctx.cost_time, _bool(ctx.success), _s(b.keys),
                      ctx.context_code, ctx.timestamp]  # fmt: skip
        else:
            fields = [t, ctx.timestamp, ctx.region_id, ctx.group, b.topic, b.msg_id, _s(b.tags),
                      _s(b.keys), b.store_host, int(b.msg_type), b.transaction_id,
                      b.transaction_state, _bool(b.from_transaction_check)]  # fmt: skip
        parts.append(c.join(str(x) for x in fields) + f)
    keys: list[str] = []
    for b in ctx.beans:
        keys.append(b.msg_id)
        if b.keys:
            keys.append(b.keys)
    return "".join(parts), keys


def _bool(v: bool) -> str:
    return "true" if v else "false"


def decode_trace_data(text: str) -> list[TraceContext]:
    """The records of a trace message body; a record that does not parse is skipped."""
    out: list[TraceContext] = []
    for record in text.split(FIELD_SPLITOR):
        line = record.split(CONTENT_SPLITOR)
        try:
            ctx = _decode_line(line)
        except (IndexError, ValueError):
            log.debug("skipping a trace record that does not parse: %r", record[:200])
            continue
        if ctx is not None:
            out.append(ctx)
    return out


def _decode_line(line: list[str]) -> TraceContext | None:
    kind = line[0]
    if kind == "Pub":
        b = TraceBean(line[4], line[5], tags=_opt(line[6]), keys=_opt(line[7]),
                      store_host=line[8], body_length=int(line[9]),
                      msg_type=MessageType(int(line[11])))  # fmt: skip
        success = line[12] == "true"
        if len(line) >= 14:
            b.offset_msg_id, success = line[12], line[13] == "true"
        if len(line) >= 15:
            b.client_host = line[14]
        return TraceContext(TraceType.Pub, int(line[1]), line[2], line[3], int(line[10]),
                            success, beans=[b])  # fmt: skip
    if kind == "SubBefore":
        b = TraceBean(msg_id=line[5], retry_times=int(line[6]), keys=_opt(line[7]))
        return TraceContext(TraceType.SubBefore, int(line[1]), line[2], line[3],
                            request_id=line[4], beans=[b])  # fmt: skip
    if kind == "SubAfter":
        b = TraceBean(msg_id=line[2], keys=_opt(line[5]))
        ctx = TraceContext(TraceType.SubAfter, 0, cost_time=int(line[3]),
                           success=line[4] == "true", request_id=line[1], beans=[b])  # fmt: skip
        if len(line) >= 7:
            ctx.context_code = int(line[6])
        if len(line) >= 8:
            ctx.timestamp = int(line[7])
        return ctx
    if kind == "EndTransaction":
        b = TraceBean(line[4], line[5], tags=_opt(line[6]), keys=_opt(line[7]),
                      store_host=line[8], msg_type=MessageType(int(line[9])),
                      transaction_id=line[10], transaction_state=line[11],
                      from_transaction_check=line[12] == "true")  # fmt: skip
        return TraceContext(TraceType.EndTransaction, int(line[1]), line[2], line[3], beans=[b])
    return None


def trace_dispatcher(
    enabled: bool,
    instance: ClientInstance,
    alive: Callable[[], bool],
    trace_topic: str | None,
    access_channel: AccessChannel,
) -> TraceDispatcher | None:
    """A producer's or consumer's dispatcher, or None when it does not trace."""
    if not enabled:
        return None
    return TraceDispatcher(
        instance, alive, trace_topic=trace_topic or TRACE_TOPIC, access_channel=access_channel
    )


class TraceDispatcher:
    """Queues trace contexts and sends them in batches through the host's `ClientInstance`.

    `append` never waits: when the queue is full the context is dropped and counted. A drain
    task runs while there is something to send and ends when the queue is empty, so there is
    nothing to start or stop; `flush` waits for what was recorded so far.

    Args:
        instance: the host producer's or consumer's instance (its connections and routes).
        alive: whether the host is still started; once it is not, what is queued is dropped
            (its connections are closed: a late send would open one nobody closes).
        trace_topic: where traces go.
        access_channel: "CLOUD" sends each trace to `rmq_sys_TRACE_DATA_<region>` instead, the
            region being the one the broker stamped on the message (`MSG_REGION`); a record
            without a region is dropped, as Java's dispatcher drops it.
    """

    def __init__(
        self,
        instance: ClientInstance,
        alive: Callable[[], bool] = lambda: True,
        *,
        trace_topic: str = TRACE_TOPIC,
        access_channel: AccessChannel = "LOCAL",
    ) -> None:
        self.instance = instance
        self.alive = alive
        self.trace_topic = trace_topic
        self.access_channel = access_channel
        self.client_host = local_ip()
        self.queue: deque[TraceContext] = deque()
        self.discarded = 0
        self.messages_sent = 0
        self.send_failures = 0
        self._task: asyncio.Task[None] | None = None
        self._publish: dict[str, PublishInfo] = {}
        """Trace topic -> where to send it (one topic, or one per region with CLOUD)."""
        self._faults = FaultTracker()

    # -- recording ----------------------------------------------------------------------------

    def append(self, ctx: TraceContext) -> bool:
        """Queue a context for sending; False when the queue was full (it is dropped)."""
        if len(self.queue) >= QUEUE_SIZE:
            self.discarded += 1
            return False
        self.queue.append(ctx)
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._drain())
        return True

    def sent(self, producer: Producer, msg: Message, cmd: RemotingCommand,
             result: SendResult) -> SendResult:  # fmt: skip
        """The Pub record of a send (the producer's hook); returns `result` untouched."""
        cfg = producer.config
        props = msg.properties
        if props.get(Prop.TRANSACTION_PREPARED) == "true":
            mtype = MessageType.Trans_Msg_Half
        elif msg.delay_level or Prop.DELAY_TIME_LEVEL in props:
            mtype = MessageType.Delay_Msg
        else:
            mtype = MessageType.Normal_Msg
        born = int(cmd.ext_fields.get("g", "0") or 0)
        now = int(time.time() * 1000)
        bean = TraceBean(
            cfg.without_namespace(msg.topic), result.msg_id, result.offset_msg_id, msg.tags,
            KEY_SEPARATOR.join(msg.keys) or None, result.broker_addr, self.client_host,
            len(msg.body), msg_type=mtype,
        )  # fmt: skip
        self.append(TraceContext(TraceType.Pub, born or now, result.region_id or "DefaultRegion",
                                 cfg.without_namespace(producer.group), max(0, now - born),
                                 beans=[bean]))  # fmt: skip
        return result

    def wrap_handler(
        self,
        consumer: PushConsumer,
        handler: Callable[[list[StoredMessage], ConsumeContext], Awaitable[ConsumeResult | None]],
    ) -> Callable[[list[StoredMessage], ConsumeContext], Awaitable[ConsumeResult | None]]:
        """The consumer's hook: `handler`, recording SubBefore and SubAfter around each call."""
        group = consumer.config.without_namespace(consumer.group)

        async def traced(msgs: list[StoredMessage], ctx: ConsumeContext) -> ConsumeResult | None:
            beans = [
                TraceBean(m.topic, m.msg_id, m.offset_msg_id, m.tags, m.properties.get(Prop.KEYS),
                          body_length=m.store_size, retry_times=m.reconsume_times)
                for m in msgs if m.properties.get(Prop.TRACE_SWITCH) != "false"
            ]  # fmt: skip
            if not beans:
                return await handler(msgs, ctx)
            region = msgs[0].properties.get(Prop.MSG_REGION, "")
            before = TraceContext(TraceType.SubBefore, region_id=region, group=group, beans=beans)
            self.append(before)
            code, success = ConsumeReturnType.SUCCESS, True
            try:
                result = await handler(msgs, ctx)
                if result is not None and result.value != "CONSUME_SUCCESS":
                    code, success = ConsumeReturnType.FAILED, False
                elif ctx.failed or ctx.ack_index < len(msgs) - 1:
                    success = False  # some of the batch will be retried
                return result
            except asyncio.CancelledError:
                code, success = ConsumeReturnType.TIME_OUT, False
                raise
            except Exception:
                code, success = ConsumeReturnType.EXCEPTION, False
                raise
            finally:
                now = int(time.time() * 1000)
                self.append(TraceContext(
                    TraceType.SubAfter, now, region, group, (now - before.timestamp) // len(msgs),
                    success, before.request_id, int(code), beans,
                ))  # fmt: skip

        return traced

    # -- sending ------------------------------------------------------------------------------

    async def flush(self, timeout_s: float = 5.0) -> None:
        """Wait until everything queued so far has been sent (or given up on)."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                while self._task is not None and not self._task.done():
                    await asyncio.wait([self._task])

    async def _drain(self) -> None:
        await asyncio.sleep(GATHER_S)
        while self.queue:
            if not self.alive():
                self.discarded += len(self.queue)
                self.queue.clear()
                return
            n = min(len(self.queue), BATCH_SIZE)
            batch = [self.queue.popleft() for _ in range(n)]
            try:
                await self._send_batch(batch)
            except Exception as exc:  # traces are best effort: never disturb the host
                self.send_failures += 1
                log.debug("trace data not sent (%s); %d records dropped", exc, len(batch))

    def trace_topic_of(self, ctx: TraceContext) -> str | None:
        """Where `ctx` goes: the trace topic, or with CLOUD its region's (None: no region)."""
        if self.access_channel != "CLOUD":
            return self.trace_topic
        return CLOUD_TRACE_TOPIC_PREFIX + ctx.region_id if ctx.region_id else None

    async def _send_batch(self, batch: list[TraceContext]) -> None:
        by_topic: dict[tuple[str, str], list[tuple[str, list[str]]]] = {}
        for ctx in batch:
            trace_topic = self.trace_topic_of(ctx)
            if ctx.beans and trace_topic is not None:
                key = (trace_topic, ctx.beans[0].topic)
                by_topic.setdefault(key, []).append(encode_context(ctx))
            elif ctx.beans:
                self.discarded += 1
        for (trace_topic, _), encoded in by_topic.items():
            data: list[str] = []
            keys: dict[str, None] = {}
            size = 0
            for text, k in encoded:
                data.append(text)
                keys.update(dict.fromkeys(k))
                size += len(text)
                if size >= MAX_MSG_SIZE:
                    await self._send(trace_topic, "".join(data), list(keys))
                    data, keys, size = [], {}, 0
            if data:
                await self._send(trace_topic, "".join(data), list(keys))

    async def _send(self, trace_topic: str, data: str, keys: list[str]) -> None:
        info = await self._publish_info(trace_topic)
        q = info.select(self._faults)
        addr = info.master_addrs[q.broker_name]
        props = encode_properties({Prop.KEYS: KEY_SEPARATOR.join(keys),
                                   Prop.UNIQ_CLIENT_MESSAGE_ID_KEYIDX: new_uniq_id()})  # fmt: skip
        cmd = RemotingCommand(RequestCode.SEND_MESSAGE_V2, ext_fields={
            "a": TRACE_GROUP, "b": trace_topic, "c": DEFAULT_TOPIC, "d": "1",
            "e": str(q.queue_id), "f": "0", "g": str(int(time.time() * 1000)),
            "h": "0", "i": props, "j": "0", "k": "false", "m": "false", "n": q.broker_name,
        }, body=data.encode())  # fmt: skip
        if not self.alive():
            raise RemotingError("the host producer or consumer has stopped")
        try:  # no await between the check and the connection lookup
            resp = await self.instance.invoke(addr, cmd, 5_000)
        except RemotingError:
            self._faults.failed(q.broker_name)
            self._publish.pop(trace_topic, None)
            raise
        if resp.code != ResponseCode.SUCCESS:
            self._publish.pop(trace_topic, None)
            raise error_for_code(resp.code)(resp.remark or "", addr=addr, request="send trace")
        self.messages_sent += 1

    async def _publish_info(self, trace_topic: str) -> PublishInfo:
        info = self._publish.get(trace_topic)
        if info is None:
            route = await self.instance.route(trace_topic)
            if route is not None:
                info = PublishInfo.from_route(trace_topic, route)
            else:  # not created by traceTopicEnable: created by the first send, as Java's
                template = await self.instance.route(DEFAULT_TOPIC)
                if template is None:
                    raise TopicNotExistError(f"no route for {trace_topic} nor {DEFAULT_TOPIC}",
                                             request="send trace")  # fmt: skip
                info = PublishInfo.from_route(trace_topic, template, 1)
            if not info.queues:
                raise TopicNotExistError(f"{trace_topic} has no writable queue",
                                         request="send trace")  # fmt: skip
            self._publish[trace_topic] = info
        return info


# -- reading traces back (RocketMQ's `TraceView`, mqadmin queryMsgTraceById) ---------------------


@dataclass(slots=True)
class ConsumeTrace:
    """One delivery of the message to a consumer group (a SubBefore, and its SubAfter once done)."""

    group: str
    timestamp: int
    retry_times: int
    client_host: str
    request_id: str
    success: bool | None = None
    """None while no SubAfter was found (still running, or its trace was lost)."""
    cost_ms: int = 0
    result: ConsumeReturnType | None = None


@dataclass(slots=True)
class MessageTrace:
    """Where one message went, from its trace records (see `AdminClient.query_trace`).

    Attributes:
        msg_id: the message id (UNIQ_KEY) traced.
        sends: the Pub records: producer group, topic, broker, offset message id, success.
        consumes: every delivery to every group, in time order; a retried message shows one per
            attempt with a growing `retry_times`.
        transactions: EndTransaction records.
        dead_letters: consumer group -> the copy in `%DLQ%<group>`, for groups that gave up.
    """

    msg_id: str
    sends: list[TraceContext] = field(default_factory=list)
    consumes: list[ConsumeTrace] = field(default_factory=list)
    transactions: list[TraceContext] = field(default_factory=list)
    dead_letters: dict[str, StoredMessage] = field(default_factory=dict)

    @property
    def stored(self) -> bool:
        """Whether a send of it was stored by a broker."""
        return any(c.success for c in self.sends)

    @property
    def groups(self) -> list[str]:
        """The consumer groups it was delivered to."""
        return sorted({c.group for c in self.consumes})

    def attempts(self, group: str) -> list[ConsumeTrace]:
        """The deliveries to `group`, first to last."""
        return [c for c in self.consumes if c.group == group]

    def retried(self, group: str) -> bool:
        return any(c.retry_times > 0 or c.success is False for c in self.attempts(group))

    def timeline(self) -> list[dict[str, Any]]:
        """One row per event as `mqadmin queryMsgTraceById` lists them: `type` (Pub, Sub,
        EndTransaction, DLQ), `group`, `clientHost`, `time` (ms), `costMs`, `retryTimes` and
        `status`; sends first, then deliveries, transaction ends and dead letters."""

        def status(success: bool | None) -> str:
            return "-" if success is None else ("success" if success else "failed")

        def host(c: TraceContext) -> str:
            return c.beans[0].client_host if c.beans else ""

        rows = [
            {"type": "Pub", "group": c.group, "clientHost": host(c), "time": c.timestamp,
             "costMs": c.cost_time, "retryTimes": 0, "status": status(c.success)}
            for c in self.sends
        ]  # fmt: skip
        rows += [
            {"type": "Sub", "group": c.group, "clientHost": c.client_host, "time": c.timestamp,
             "costMs": c.cost_ms, "retryTimes": c.retry_times, "status": status(c.success)}
            for c in self.consumes
        ]  # fmt: skip
        rows += [
            {"type": "EndTransaction", "group": c.group, "clientHost": host(c),
             "time": c.timestamp, "costMs": c.cost_time, "retryTimes": 0,
             "status": c.beans[0].transaction_state if c.beans else status(c.success)}
            for c in self.transactions
        ]  # fmt: skip
        rows += [
            {"type": "DLQ", "group": group, "clientHost": "", "time": m.store_timestamp,
             "costMs": 0, "retryTimes": m.reconsume_times, "status": f"in %DLQ%{group}"}
            for group, m in sorted(self.dead_letters.items())
        ]  # fmt: skip
        return rows


def build_trace(msg_id: str, trace_messages: list[StoredMessage]) -> MessageTrace:
    """Gather the records about `msg_id` from trace-topic messages (any order)."""
    out = MessageTrace(msg_id)
    afters: dict[str, TraceContext] = {}
    for m in trace_messages:
        host = format_host(m.born_host).rsplit(":", 1)[0]
        for ctx in decode_trace_data(m.body.decode("utf-8", "replace")):
            bean = ctx.beans[0]
            if bean.msg_id != msg_id:
                continue
            if ctx.trace_type is TraceType.Pub:
                bean.client_host = bean.client_host or host
                out.sends.append(ctx)
            elif ctx.trace_type is TraceType.SubBefore:
                out.consumes.append(ConsumeTrace(ctx.group, ctx.timestamp, bean.retry_times, host,
                                                 ctx.request_id))  # fmt: skip
            elif ctx.trace_type is TraceType.SubAfter:
                afters[ctx.request_id] = ctx
            else:
                out.transactions.append(ctx)
    for c in out.consumes:
        after = afters.get(c.request_id)
        if after is not None:
            c.success, c.cost_ms = after.success, after.cost_time
            with contextlib.suppress(ValueError):
                c.result = ConsumeReturnType(after.context_code)
    out.sends.sort(key=lambda c: c.timestamp)
    out.consumes.sort(key=lambda c: (c.timestamp, c.retry_times))
    out.transactions.sort(key=lambda c: c.timestamp)
    return out
