"""Finding messages: by offset message id, by key, by the time they were stored, their trace,
and sending a dead letter back. Part of `AdminClient` (`rmqkit.client.admin`)."""

from __future__ import annotations

import time

from rmqkit.client.admin_base import AdminBase, read_addr
from rmqkit.client.trace import TRACE_TOPIC, MessageTrace, build_trace
from rmqkit.common.names import DEFAULT_TOPIC, TOOLS_CONSUMER_GROUP, dlq_topic, retry_topic
from rmqkit.common.properties import Prop, encode_properties
from rmqkit.errors import (
    BrokerResponseError,
    CorruptRecordError,
    RemotingError,
    TopicNotExistError,
    error_for_code,
)
from rmqkit.protocol.codes import PULL_SUBSCRIPTION, RequestCode, ResponseCode
from rmqkit.protocol.command import RemotingCommand
from rmqkit.protocol.message_id import decode_offset_msg_id
from rmqkit.protocol.record import Host, StoredMessage, decode_records, format_host
from rmqkit.protocol.route import MASTER_ID

_PULL_GOES_ON = (ResponseCode.SUCCESS, ResponseCode.PULL_OFFSET_MOVED,
                 ResponseCode.PULL_RETRY_IMMEDIATELY)  # fmt: skip
"""Pull answers after which a queue may hold more at `nextBeginOffset`."""


class MessageQueries(AdminBase):
    """The message look-ups of `AdminClient`."""

    async def view_message(self, offset_msg_id: str) -> StoredMessage:
        """A message by its offset message id: asked of the broker inside the id, or, when that
        broker does not answer (a master that is down), of the cluster's other brokers, slaves
        first. A slave's commit log is its master's byte for byte, so its record at the same
        offset is the message; a record stored by another host is not taken.

        Raises:
            RemotingError: no broker had it and the one inside the id did not answer.
        """
        host, phys = decode_offset_msg_id(offset_msg_id)
        addr = format_host(host)
        try:
            resp = await self._call(addr, RequestCode.VIEW_MESSAGE_BY_ID, offset=phys)
        except RemotingError as exc:
            found = await self._view_elsewhere(addr, host, phys)
            if found is None:
                raise exc from None
            return found
        return decode_records(resp.body)[0]

    async def _view_elsewhere(self, addr: str, host: Host, phys: int) -> StoredMessage | None:
        members = sorted(
            (bid == MASTER_ID, a)
            for bd in (await self.cluster()).broker_addr_table.values()
            for bid, a in bd.broker_addrs.items()
            if a != addr
        )
        for _, other in members:
            try:
                resp = await self._call(other, RequestCode.VIEW_MESSAGE_BY_ID, offset=phys)
                msg = decode_records(resp.body)[0]
            except (RemotingError, BrokerResponseError, CorruptRecordError, IndexError):
                continue
            if msg.store_host == host:
                return msg
        return None

    async def query_by_key(
        self, topic: str, key: str, *, max_num: int = 32, begin_ms: int = 0,
        end_ms: int | None = None,
    ) -> list[StoredMessage]:  # fmt: skip
        """Messages of `topic` whose KEYS or UNIQ_KEY is `key`, from every broker of the topic."""
        end = end_ms if end_ms is not None else int(time.time() * 1000) + 1000
        out: list[StoredMessage] = []
        for bd in (await self.route(topic)).broker_datas:
            addr = read_addr(bd)
            if addr is None:
                continue
            try:
                resp = await self._call(
                    addr, RequestCode.QUERY_MESSAGE, topic=topic, key=key, maxNum=max_num,
                    beginTimestamp=begin_ms, endTimestamp=end,
                )  # fmt: skip
            except BrokerResponseError as exc:
                if exc.code == ResponseCode.QUERY_NOT_FOUND:
                    continue
                raise
            out += decode_records(resp.body)
        return out

    async def messages_between(
        self, topic: str, begin_ms: int, end_ms: int, *, max_num: int = 2000
    ) -> tuple[list[StoredMessage], bool]:
        """The messages of `topic` stored from `begin_ms` to `end_ms` (both included), from every
        queue of every broker that has it, oldest first (mqadmin's `printMsg`, the dashboard's
        query by topic). They are read with PULL_MESSAGE as RocketMQ's tools read them (group
        `TOOLS_CONSUMER`, no offset committed), from each queue's offset at `begin_ms`.

        Returns:
            At most `max_num` messages, and whether more were in the range.
        """
        route = await self.route(topic)
        queues = {q.broker_name: q.read_queue_nums for q in route.queue_datas}
        found: list[StoredMessage] = []
        for bd in route.broker_datas:
            addr = read_addr(bd)
            if addr is None:
                continue
            for qid in range(queues.get(bd.broker_name, 0)):
                found += await self._queue_between(addr, topic, qid, begin_ms, end_ms, max_num + 1)
        found.sort(key=lambda m: (m.store_timestamp, m.queue_id, m.queue_offset))
        return found[:max_num], len(found) > max_num

    async def _queue_between(
        self, addr: str, topic: str, qid: int, begin_ms: int, end_ms: int, limit: int
    ) -> list[StoredMessage]:
        async def offset_at(ms: int) -> int:
            resp = await self._call(addr, RequestCode.SEARCH_OFFSET_BY_TIMESTAMP, topic=topic,
                                    queueId=qid, timestamp=ms)  # fmt: skip
            return int(resp.ext_fields.get("offset", "0"))

        offset, end = await offset_at(begin_ms), await offset_at(end_ms + 1)
        out: list[StoredMessage] = []
        while offset < end and len(out) < limit:
            code, msgs, next_offset = await self._pull(addr, topic, qid, offset, end - offset)
            out += [m for m in msgs if begin_ms <= m.store_timestamp <= end_ms]
            if code not in _PULL_GOES_ON or next_offset <= offset:
                break  # PULL_NOT_FOUND: nothing more in this queue
            offset = next_offset
        return out

    async def _pull(
        self, addr: str, topic: str, qid: int, offset: int, max_nums: int
    ) -> tuple[int, list[StoredMessage], int]:
        """One PULL_MESSAGE as RocketMQ's tools pull (group `TOOLS_CONSUMER`, every tag, no
        offset committed, no waiting): the answer's code, its messages, `nextBeginOffset`."""
        cmd = RemotingCommand(RequestCode.PULL_MESSAGE, ext_fields={
            "consumerGroup": TOOLS_CONSUMER_GROUP, "topic": topic, "queueId": str(qid),
            "queueOffset": str(offset), "maxMsgNums": str(min(32, max_nums)),
            "sysFlag": str(PULL_SUBSCRIPTION), "commitOffset": "0", "suspendTimeoutMillis": "0",
            "subscription": "*", "subVersion": "0", "expressionType": "TAG",
        })  # fmt: skip
        resp = await self.instance.invoke(addr, cmd, 10_000)
        msgs = decode_records(resp.body) if resp.code == ResponseCode.SUCCESS else []
        return resp.code, msgs, int(resp.ext_fields.get("nextBeginOffset", offset))

    async def message_at(
        self, topic: str, broker_name: str, queue_id: int, offset: int
    ) -> StoredMessage:
        """The message at `offset` of one queue (mqadmin's `queryMsgByOffset`).

        Raises:
            BrokerResponseError: no broker of that name serves the topic (TOPIC_NOT_EXIST), or
                the queue holds no message at that offset (QUERY_NOT_FOUND).
        """
        route = await self.route(topic)
        bd = next((b for b in route.broker_datas if b.broker_name == broker_name), None)
        addr = read_addr(bd) if bd is not None else None
        if addr is None:
            raise error_for_code(ResponseCode.TOPIC_NOT_EXIST)(
                f"no broker named {broker_name!r} serves topic {topic!r}", request="message_at"
            )
        code, msgs, _ = await self._pull(addr, topic, queue_id, offset, 1)
        if not msgs or msgs[0].queue_offset != offset:
            why = ResponseCode(code).name if code != ResponseCode.SUCCESS else "another offset"
            raise error_for_code(ResponseCode.QUERY_NOT_FOUND)(
                f"queue {queue_id} of {topic} on {broker_name} has no message at offset {offset}"
                f" ({why})", addr=addr, request="message_at",
            )  # fmt: skip
        return msgs[0]

    async def query_trace(
        self, msg_id: str, *, trace_topic: str = TRACE_TOPIC, max_num: int = 64,
        begin_ms: int = 0, end_ms: int | None = None,
    ) -> MessageTrace:  # fmt: skip
        """Where a message went, from the trace records clients wrote with message trace on
        (RocketMQ's `queryMsgTraceById`): the sends that stored it, each delivery to each
        consumer group with its retry count and outcome, and for each of those groups whether
        the message now sits in `%DLQ%<group>`.

        Args:
            msg_id: the message id (UNIQ_KEY) a send returned.
            trace_topic: the trace topic the clients write to.
            max_num: trace messages to read at most, per broker.
            begin_ms, end_ms: when the trace messages were stored.

        Returns:
            The trace; empty when no trace record of it was found.
        """
        try:
            found = await self.query_by_key(trace_topic, msg_id, max_num=max_num,
                                            begin_ms=begin_ms, end_ms=end_ms)  # fmt: skip
        except TopicNotExistError:
            found = []
        trace = build_trace(msg_id, found)
        for group in trace.groups:
            try:
                dead = await self.query_by_key(dlq_topic(group), msg_id, max_num=1)
            except TopicNotExistError:
                continue
            if dead:
                trace.dead_letters[group] = dead[0]
        return trace

    async def resend_dead_letter(self, dlq_msg: StoredMessage, group: str) -> str:
        """Send a dead letter back to its group's retry topic, so the group consumes it again.

        Returns the offset message id of the new copy."""
        topic = retry_topic(group)
        props = dict(dlq_msg.properties)
        props.pop(Prop.DELAY_TIME_LEVEL, None)
        route = await self.route(topic)
        masters = [bd.master_addr for bd in route.broker_datas if bd.master_addr]
        if not masters:
            raise error_for_code(ResponseCode.SLAVE_NOT_AVAILABLE)(
                f"no master of {topic} is up to take the message", request="resend_dead_letter"
            )
        addr = masters[0]
        resp = await self._call(
            addr, RequestCode.SEND_MESSAGE_V2, dlq_msg.body, a="RMQKIT_ADMIN", b=topic,
            c=DEFAULT_TOPIC, d=1, e=0, f=0, g=int(time.time() * 1000),  # the body is inflated
            h=dlq_msg.flag, i=encode_properties(props), j=0, k="false", m="false",
        )  # fmt: skip
        return resp.ext_fields.get("msgId", "")
