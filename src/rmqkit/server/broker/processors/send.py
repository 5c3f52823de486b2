"""SEND_MESSAGE, SEND_MESSAGE_V2 and SEND_BATCH_MESSAGE (RocketMQ `SendMessageProcessor`).

Checks the broker and topic permissions, auto-creates a topic through its template, picks a queue
when the producer asks for -1, stores the message(s), and answers with the offset message id,
queue id and queue offset. Store statuses map to response codes in `put_status_response`; a
SYNC_MASTER's FLUSH_SLAVE_TIMEOUT and SLAVE_NOT_AVAILABLE (stored on the master, not confirmed by
a slave) are answered with their codes and the offsets, as FLUSH_DISK_TIMEOUT is. A slave refuses
every send with SERVICE_NOT_AVAILABLE. A
message asking for a future time (TIMER_*) is routed to the timer topic here, with RocketMQ 5's
checks (`store/timer.py`); refusals map to response codes in `_TIMER_CODES`.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable
from functools import lru_cache
from typing import TYPE_CHECKING

from rmqkit.common.java_values import LONG_MAX as _LONG_MAX
from rmqkit.common.java_values import LONG_MIN as _LONG_MIN
from rmqkit.common.names import topic_problem
from rmqkit.common.properties import Prop, find_property
from rmqkit.common.topic import TopicConfig, perm_writable
from rmqkit.errors import CorruptRecordError
from rmqkit.protocol.batch import batch_spans
from rmqkit.protocol.codes import RequestCode, ResponseCode
from rmqkit.protocol.command import RemotingCommand
from rmqkit.protocol.record import Host, pack_host
from rmqkit.remoting.connection import Connection, HandlerResult
from rmqkit.remoting.eager import Suspended, start_eagerly
from rmqkit.server.broker.headers import Header, HeaderProblem
from rmqkit.server.broker.transaction import to_half
from rmqkit.server.store import MessageToStore, PutResult, PutStatus
from rmqkit.server.store.message import BatchToStore, stamp_properties
from rmqkit.server.store.results import STORED
from rmqkit.server.store.timer import (
    TIMER_TOPIC,
    TimerPolicy,
    TimerRefusal,
    TimerStatus,
    requests_timer,
    route_timer,
)

if TYPE_CHECKING:
    from rmqkit.server.broker.broker import Broker

log = logging.getLogger("rmqkit.broker.send")

NOT_SENDABLE = frozenset(
    {"SCHEDULE_TOPIC_XXXX", "RMQ_SYS_TRANS_HALF_TOPIC", "RMQ_SYS_TRANS_OP_HALF_TOPIC", TIMER_TOPIC}
)
"""System topics producers may not write to directly."""

_PUT_CODES = {
    PutStatus.OK: ResponseCode.SUCCESS,
    PutStatus.FLUSH_DISK_TIMEOUT: ResponseCode.FLUSH_DISK_TIMEOUT,
    PutStatus.FLUSH_SLAVE_TIMEOUT: ResponseCode.FLUSH_SLAVE_TIMEOUT,
    PutStatus.SLAVE_NOT_AVAILABLE: ResponseCode.SLAVE_NOT_AVAILABLE,
    PutStatus.SERVICE_NOT_AVAILABLE: ResponseCode.SERVICE_NOT_AVAILABLE,
    PutStatus.DISK_FULL: ResponseCode.SERVICE_NOT_AVAILABLE,
    PutStatus.CREATE_MAPPED_FILE_FAILED: ResponseCode.SYSTEM_ERROR,
    PutStatus.MESSAGE_ILLEGAL: ResponseCode.MESSAGE_ILLEGAL,
    PutStatus.PROPERTIES_SIZE_EXCEEDED: ResponseCode.MESSAGE_ILLEGAL,
    PutStatus.UNKNOWN_ERROR: ResponseCode.SYSTEM_ERROR,
}
_TIMER_CODES = {
    TimerStatus.ILLEGAL: ResponseCode.MESSAGE_ILLEGAL,
    TimerStatus.NOT_ENABLED: ResponseCode.SYSTEM_ERROR,
}
# Plain values for the per-message tests: reading an enum member costs about 80 ns in 3.11.
_INT_MIN, _INT_MAX = -(1 << 31), (1 << 31) - 1
_SEND_MESSAGE = int(RequestCode.SEND_MESSAGE)
_SEND_MESSAGE_V2 = int(RequestCode.SEND_MESSAGE_V2)
_SEND_BATCH_MESSAGE = int(RequestCode.SEND_BATCH_MESSAGE)
_OK = PutStatus.OK
# Memoised per distinct argument: parsing an address or matching the topic regex costs
# microseconds, and a broker sees the same few producers and topics over and over.
_born_host = lru_cache(maxsize=4096)(pack_host)
_topic_problem = lru_cache(maxsize=4096)(topic_problem)

# The send header's fields `_plain` reads, in SEND_MESSAGE_V2's one-letter names and in
# SEND_MESSAGE's: topic, queueId, sysFlag, bornTimestamp, flag, properties, reconsumeTimes, batch.
_V2_KEYS = ("b", "e", "f", "g", "h", "i", "j", "m")
_V1_KEYS = (
    "topic", "queueId", "sysFlag", "bornTimestamp", "flag", "properties", "reconsumeTimes",
    "batch",
)  # fmt: skip


def _prop(props: str, key: str) -> str | None:
    """`find_property` behind a substring test, 10x cheaper: most sends lack most keys."""
    return find_property(props, key) if key in props else None


def _message(
    topic: str, queue_id: int, body: bytes, props: str, flag: int, sys_flag: int, born_ts: int,
    born: Host, reconsume: int, stamp: str,
) -> MessageToStore:  # fmt: skip
    """The message to store for one send (or one message of a batch): its properties end with a
    separator and then carry the broker's `stamp`; WAIT=false spares it the flush wait."""
    wait = _prop(props, Prop.WAIT_STORE_MSG_OK) != "false"
    return MessageToStore(
        topic, queue_id, body, stamp_properties(props, stamp), flag, sys_flag, born_ts, born,
        reconsume, 0, -1, wait,
    )  # fmt: skip


def put_status_response(
    cmd: RemotingCommand, r: PutResult, region: str = "DefaultRegion", trace_on: str = "true"
) -> RemotingCommand:
    """The response to a send stored with result `r` (offsets given even on a flush timeout)."""
    status = r.status
    code = _PUT_CODES[status]
    if status is not _OK and status not in STORED:
        return cmd.response(code, r.remark or status.name)
    fields = cmd.ext_fields
    queue_id = fields.get("queueId")
    ext = {
        "msgId": ",".join(r.msg_ids) if r.message_count > 1 else r.msg_id,
        "queueId": str(fields.get("e", "0") if queue_id is None else queue_id),
        "queueOffset": str(r.queue_offset),
        "MSG_REGION": region,
        "TRACE_ON": trace_on,
    }
    return cmd.response(code, None if status is _OK else status.name, ext)


def _store_failed(count: int, exc: Exception) -> list[PutResult]:
    """The results of `count` sends whose store call raised (a fault, not a store status)."""
    log.error("storing %d sends failed", count, exc_info=exc)
    return [PutResult(PutStatus.UNKNOWN_ERROR, remark=repr(exc))] * count


class SendProcessor:
    """Serves the three send codes."""

    def __init__(self, broker: Broker) -> None:
        self.broker = broker
        s = broker.settings
        self._region, self._trace_on = s.region_id, "true" if s.trace_on else "false"
        self._stamp = (
            f"{Prop.CLUSTER}\x01{s.broker_cluster_name}\x02{Prop.MSG_REGION}\x01{self._region}"
            f"\x02{Prop.TRACE_SWITCH}\x01{self._trace_on}\x02"
        )
        """Appended to every stored message's properties, as Java's broker puts them."""
        store = broker.settings.store
        self.timer = TimerPolicy(
            store.timer_wheel_enable, store.timer_max_delay_sec * 1000, store.timer_precision_ms
        )

    def __call__(self, conn: Connection, cmd: RemotingCommand) -> HandlerResult:
        msgs = self._prepare(conn, cmd)
        if isinstance(msgs, RemotingCommand):
            return msgs
        return self._store(cmd, msgs)

    def run(self, conn: Connection, cmds: list[RemotingCommand]) -> list[HandlerResult]:
        """The sends of one read, stage by stage: every request checked and its message built,
        then the single messages stored by one `put_each` (one flush wait under SYNC_FLUSH),
        then all answered. Batch sends are stored one by one, as `__call__` does."""
        out: list[HandlerResult] = []
        singles: list[MessageToStore] = []
        waiting: list[RemotingCommand] = []
        for cmd in cmds:
            msgs = self._prepare(conn, cmd)
            if isinstance(msgs, RemotingCommand):
                out.append(msgs)
            elif isinstance(msgs, list) and len(msgs) == 1:
                out.append(None)  # answered below, or later by `_answer_later`
                singles.append(msgs[0])
                waiting.append(cmd)
            else:
                out.append(self._store(cmd, msgs))
        if not singles:
            return out
        try:
            _, stored = start_eagerly(self.broker.store.put_each(singles))
        except Exception as exc:  # not a store status: a fault; the other requests go on
            stored = _store_failed(len(singles), exc)
        if isinstance(stored, Suspended):  # waiting for the flush: one task for them all
            conn.track(self._answer_later(conn, waiting, stored))
            return out
        answers = iter(self._answers(waiting, stored))
        return [next(answers) if r is None else r for r in out]

    def _answers(
        self, cmds: list[RemotingCommand], results: list[PutResult]
    ) -> list[RemotingCommand]:
        self.broker.stats.put(sum(1 for r in results if r.status in STORED))
        region, trace_on = self._region, self._trace_on
        return [
            put_status_response(c, r, region, trace_on) for c, r in zip(cmds, results, strict=True)
        ]

    async def _answer_later(
        self, conn: Connection, cmds: list[RemotingCommand], pending: Awaitable[list[PutResult]]
    ) -> None:
        try:
            results = await pending
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            results = _store_failed(len(cmds), exc)
        for cmd, answer in zip(cmds, self._answers(cmds, results), strict=True):
            conn.reply(cmd, answer)

    def _prepare(
        self, conn: Connection, cmd: RemotingCommand
    ) -> list[MessageToStore] | BatchToStore | RemotingCommand:
        """The message(s) a send request asks to store, or the refusal to answer with."""
        plain = self._plain(conn, cmd)
        if plain is not None:
            return [plain]
        try:
            header = Header(cmd.ext_fields) if cmd.code == _SEND_MESSAGE else Header.of_send_v2(cmd)
            topic = header.text("topic")
            refusal = self._check_broker(cmd, topic)
            if refusal is not None:
                return refusal
            cfg = self._topic_config(header, topic)
            if cfg is not None and not perm_writable(cfg.perm):
                return cmd.response(
                    ResponseCode.NO_PERMISSION, f"the topic[{topic}] sending message is forbidden"
                )
            if cfg is None:
                return cmd.response(
                    ResponseCode.TOPIC_NOT_EXIST,
                    f"topic[{topic}] not exist, apply first please! (autoCreateTopicEnable is "
                    f"{str(self.broker.settings.auto_create_topic_enable).lower()})",
                )
            queue_id = header.integer("queueId", 32)
            if queue_id < 0:
                queue_id = random.randrange(cfg.write_queue_nums)
            elif queue_id >= cfg.write_queue_nums:
                return cmd.response(
                    ResponseCode.SYSTEM_ERROR,
                    f"request queueId[{queue_id}] is illegal, topic {topic} has "
                    f"{cfg.write_queue_nums} write queues",
                )
            msgs = self._messages(conn, cmd, header, topic, queue_id)
        except HeaderProblem as exc:
            return cmd.response(ResponseCode.SYSTEM_ERROR, str(exc))
        except CorruptRecordError as exc:
            return cmd.response(ResponseCode.MESSAGE_ILLEGAL, f"the batch body is malformed: {exc}")
        if not isinstance(msgs, RemotingCommand):
            cmd.ext_fields["queueId"] = str(queue_id)
        return msgs

    def _plain(self, conn: Connection, cmd: RemotingCommand) -> MessageToStore | None:
        """The message of the usual send, read straight from extFields: one message (neither a
        batch, nor a half message, nor timed) to a writable topic that exists, every number well
        formed. None sends the request down `_prepare`'s general path, which gives each
        refusal its remark; what this accepts, that path would build the same way.
        """
        code = cmd.code
        if code == _SEND_MESSAGE_V2:
            keys = _V2_KEYS
        elif code == _SEND_MESSAGE:
            keys = _V1_KEYS
        else:
            return None
        get = cmd.ext_fields.get
        topic = get(keys[0])
        props = get(keys[5]) or ""
        batch = get(keys[7])
        if topic is None or (batch is not None and batch != "false"):
            return None
        if "TIMER_" in props or Prop.TRANSACTION_PREPARED in props:  # timed, or half: general path
            return None
        cfg = self.broker.topics.get(topic)
        if cfg is None or not perm_writable(cfg.perm) or self._check_broker(cmd, topic):
            return None
        try:
            queue_id = int(get(keys[1]))  # type: ignore[arg-type]  # None: TypeError
            sys_flag = int(get(keys[2]))  # type: ignore[arg-type]
            born_ts = int(get(keys[3]))  # type: ignore[arg-type]
            raw = get(keys[4])
            flag = 0 if raw is None else int(raw)
            raw = get(keys[6])
            reconsume = 0 if raw is None else int(raw)
        except (TypeError, ValueError):
            return None
        if (
            max(queue_id, sys_flag, flag, reconsume) > _INT_MAX
            or min(queue_id, sys_flag, flag, reconsume) < _INT_MIN
            or not _LONG_MIN <= born_ts <= _LONG_MAX
        ):  # past Java's int or long: the general path says which
            return None
        if queue_id < 0:
            queue_id = random.randrange(cfg.write_queue_nums)
        elif queue_id >= cfg.write_queue_nums:
            return None
        cmd.ext_fields["queueId"] = str(queue_id)
        born = _born_host(*conn.peer_host)
        return _message(
            topic, queue_id, bytes(cmd.body), props, flag, sys_flag, born_ts, born, reconsume,
            self._stamp,
        )  # fmt: skip

    async def _store(
        self, cmd: RemotingCommand, msgs: list[MessageToStore] | BatchToStore
    ) -> RemotingCommand:
        store = self.broker.store
        if isinstance(msgs, BatchToStore):
            r = await store.put_batch(msgs)
        else:
            r = await (store.put_message(msgs[0]) if len(msgs) == 1 else store.put_messages(msgs))
        self.broker.stats.put(r.message_count if r.status in STORED else 0)
        return put_status_response(cmd, r, self._region, self._trace_on)

    def _check_broker(self, cmd: RemotingCommand, topic: str) -> RemotingCommand | None:
        s = self.broker.settings
        if not s.is_master:
            master = self.broker.master_addr
            return cmd.response(
                ResponseCode.SERVICE_NOT_AVAILABLE,
                f"the broker[{s.broker_name}, {s.broker_addr}] is a slave (brokerId "
                f"{s.broker_id}) and takes no messages: send to the master of {s.broker_name}"
                + (f" at {master}" if master else " (brokerId 0)"),
            )
        if not perm_writable(s.broker_permission):
            return cmd.response(
                ResponseCode.NO_PERMISSION,
                f"the broker[{s.broker_name}, {s.broker_addr}] sending message is forbidden",
            )
        problem = _topic_problem(topic)
        if problem is not None:
            return cmd.response(ResponseCode.MESSAGE_ILLEGAL, problem)
        if topic in NOT_SENDABLE:
            return cmd.response(ResponseCode.NO_PERMISSION, f"sending to {topic} is forbidden")
        return None

    def _topic_config(self, header: Header, topic: str) -> TopicConfig | None:
        topics = self.broker.topics
        cfg = topics.get(topic)
        if cfg is None and self.broker.settings.auto_create_topic_enable:
            default_topic = header.opt_text("defaultTopic") or "TBW102"
            nums = header.opt_int("defaultTopicQueueNums", 4, 32)
            cfg = topics.create_in_send(topic, default_topic, nums)
            if cfg is not None:
                self.broker.registration.register_soon()
        return cfg

    def _messages(
        self, conn: Connection, cmd: RemotingCommand, header: Header, topic: str, queue_id: int
    ) -> list[MessageToStore] | BatchToStore | RemotingCommand:
        props = header.opt_text("properties") or ""
        prepared = _prop(props, Prop.TRANSACTION_PREPARED) == "true"
        born = _born_host(*conn.peer_host)
        sys_flag = header.integer("sysFlag", 32)
        born_ts = header.integer("bornTimestamp")
        flag = header.opt_int("flag", 0, 32)
        reconsume = header.opt_int("reconsumeTimes", 0, 32)
        cluster = self._stamp
        body = bytes(cmd.body)
        if cmd.code == _SEND_BATCH_MESSAGE or header.flag("batch"):
            spans = batch_spans(body)
            if not spans:
                return cmd.response(ResponseCode.MESSAGE_ILLEGAL, "the batch is empty")
            if prepared:
                return cmd.response(ResponseCode.MESSAGE_ILLEGAL, "a batch cannot be transactional")
            wait = _prop(spans[0][2], Prop.WAIT_STORE_MSG_OK) != "false"
            batch = BatchToStore(
                topic, queue_id, body, spans, cluster, sys_flag, born_ts, born, reconsume, wait
            )
            if not any("TIMER_" in props for _, _, props, _ in spans):
                return batch  # (a delay level is refused by the store)
            msgs = batch.messages()
            if self._timed(msgs):
                # Java's CommitLog refuses a batch with a DELAY level but stores timer requests
                # in a batch untimed, delivering them at once; refusing tells the sender.
                return cmd.response(
                    ResponseCode.MESSAGE_ILLEGAL,
                    "a batch cannot hold timer messages (TIMER_DELIVER_MS, TIMER_DELAY_SEC, "
                    "TIMER_DELAY_MS); send them one by one",
                )
            return batch
        msg = _message(
            topic, queue_id, body, props, flag, sys_flag, born_ts, born, reconsume, cluster
        )
        if prepared:  # a half message: hidden until END_TRANSACTION commits it
            if "TIMER_" in props and requests_timer(props):
                return cmd.response(
                    ResponseCode.MESSAGE_ILLEGAL,
                    "a transactional message cannot ask for a delivery time (TIMER_DELIVER_MS, "
                    "TIMER_DELAY_SEC, TIMER_DELAY_MS), as RocketMQ 5 clients refuse",
                )
            return [to_half(msg)]
        if "TIMER_" in props:
            routed = route_timer(msg, int(time.time() * 1000), self.timer)
            if isinstance(routed, TimerRefusal):
                return cmd.response(_TIMER_CODES[routed.status], routed.remark)
            msg = routed
        return [msg]

    def _timed(self, msgs: list[MessageToStore]) -> bool:
        """Whether any message of a batch would go to the timer topic (or be refused for it)."""
        now = int(time.time() * 1000)
        return any(route_timer(m, now, self.timer) is not m for m in msgs)
