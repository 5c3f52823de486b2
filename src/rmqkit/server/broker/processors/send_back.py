"""CONSUMER_SEND_MSG_BACK: a consumer gives a message back for a later retry (RocketMQ
`AbstractSendMessageProcessor.consumerSendMsgBack`).

The message is stored again in `%RETRY%<group>` with delay level 3 + reconsume times (or the
level the consumer asks for), so it comes back after RocketMQ's back-off (10 s, 30 s, 1 min, ...
with the default levels); it keeps ORIGIN_MESSAGE_ID and RETRY_TOPIC (its first topic) and counts
one more reconsume. Once it has been retried the group's `retryMaxTimes` times (or the message's
own MAX_RECONSUME_TIMES), or when the consumer asks for level -1, it goes to `%DLQ%<group>`
instead, a topic consumers cannot read by default.

A slave refuses it (SERVICE_NOT_AVAILABLE, as RocketMQ's store refuses a put on a slave): only the
master writes. `slave_refusal` words that answer for every write a slave refuses.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING

from rmqkit.common.names import dlq_topic, retry_topic
from rmqkit.common.properties import Prop, encode_properties
from rmqkit.common.topic import PERM_RW, PERM_WRITE, TopicConfig, perm_writable
from rmqkit.errors import CorruptRecordError
from rmqkit.protocol.codes import ResponseCode
from rmqkit.protocol.command import RemotingCommand
from rmqkit.protocol.record import decode_record, pack_host
from rmqkit.remoting.connection import Connection, HandlerResult
from rmqkit.server.broker.headers import Header, HeaderProblem
from rmqkit.server.store import MessageToStore

if TYPE_CHECKING:
    from rmqkit.server.broker.broker import Broker


def slave_refusal(
    broker: Broker, cmd: RemotingCommand, code: ResponseCode, what: str
) -> RemotingCommand | None:
    """The answer of a slave to a request only its master may serve; None on a master."""
    s = broker.settings
    if s.is_master:
        return None
    master = broker.master_addr or "(not known yet)"
    return cmd.response(
        code,
        f"the broker {s.broker_name}[{s.broker_addr}] is a slave (brokerId {s.broker_id}) and "
        f"does not take {what}; send it to the master of {s.broker_name}, {master}",
    )


class SendBackProcessor:
    def __init__(self, broker: Broker) -> None:
        self.broker = broker

    def __call__(self, conn: Connection, cmd: RemotingCommand) -> HandlerResult:
        refusal = slave_refusal(
            self.broker, cmd, ResponseCode.SERVICE_NOT_AVAILABLE, "messages sent back"
        )
        if refusal is not None:
            return refusal  # before the group lookup, which may create the group
        try:
            h = Header(cmd.ext_fields)
            offset = h.integer("offset")
            group_name = h.text("group")
            delay_level = h.opt_int("delayLevel", 0, 32)
            max_times_asked = h.opt_int("maxReconsumeTimes", -1, 32)
        except HeaderProblem as exc:
            return cmd.response(ResponseCode.SYSTEM_ERROR, str(exc))
        b = self.broker
        group = b.groups.find(group_name)
        if group is None:
            return cmd.response(
                ResponseCode.SUBSCRIPTION_GROUP_NOT_EXIST,
                f"subscription group [{group_name}] does not exist",
            )
        if not perm_writable(b.settings.broker_permission):
            return cmd.response(ResponseCode.NO_PERMISSION, "the broker is not writable")
        if group.retry_queue_nums <= 0:
            return cmd.response(ResponseCode.SUCCESS)  # the group asked for no retries
        rec = b.store.look_message_by_offset(offset)
        if rec is None:
            return cmd.response(
                ResponseCode.SYSTEM_ERROR, f"look message by offset failed, {offset}"
            )
        try:
            m = decode_record(rec, inflate=False)
        except CorruptRecordError as exc:
            return cmd.response(ResponseCode.SYSTEM_ERROR, f"the message at {offset}: {exc}")
        props = dict(m.properties)
        props.setdefault(Prop.RETRY_TOPIC, m.topic)
        props.setdefault(Prop.ORIGIN_MESSAGE_ID, cmd.ext_fields.get("originMsgId") or m.msg_id)
        props.pop(Prop.DELAY_TIME_LEVEL, None)
        props.pop(Prop.WAIT_STORE_MSG_OK, None)
        max_times = group.retry_max_times
        if max_times_asked >= 0:
            max_times = max_times_asked
        elif Prop.MAX_RECONSUME_TIMES in props:
            max_times = int(props[Prop.MAX_RECONSUME_TIMES] or max_times)
        if m.reconsume_times >= max_times or delay_level < 0:
            topic = dlq_topic(group_name)
            self._ensure(topic, 1, PERM_WRITE)
            queue_id = 0
            props[Prop.DLQ_ORIGIN_TOPIC] = props[Prop.RETRY_TOPIC]
            props[Prop.DLQ_ORIGIN_MESSAGE_ID] = props[Prop.ORIGIN_MESSAGE_ID]
        else:
            topic = retry_topic(group_name)
            self._ensure(topic, group.retry_queue_nums, PERM_RW)
            queue_id = random.randrange(group.retry_queue_nums)
            props[Prop.DELAY_TIME_LEVEL] = str(delay_level or 3 + m.reconsume_times)
        msg = MessageToStore(
            topic, queue_id, m.body, encode_properties(props), m.flag, m.sys_flag,
            m.born_timestamp, pack_host(*conn.peer_host) if not m.born_host[0] else m.born_host,
            m.reconsume_times + 1, 0, m.body_crc, False,
        )  # fmt: skip
        return self._store(cmd, msg)

    def _ensure(self, topic: str, queues: int, perm: int) -> None:
        if self.broker.topics.get(topic) is None:
            self.broker.topics.put(TopicConfig(topic, queues, queues, perm))
            self.broker.registration.register_soon()

    async def _store(self, cmd: RemotingCommand, msg: MessageToStore) -> RemotingCommand:
        r = await self.broker.store.put_message(msg)
        if r.stored:
            return cmd.response(ResponseCode.SUCCESS)
        return cmd.response(ResponseCode.SYSTEM_ERROR, r.remark or r.status.name)
