"""Asking a consumer client through a broker: its running info (GET_CONSUMER_RUNNING_INFO), and
running its listener on one message (CONSUME_MESSAGE_DIRECTLY). Part of `AdminClient`
(`rmqkit.client.admin`); the client's side is `rmqkit.client.running_info`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from rmqkit.client.admin_base import read_addr
from rmqkit.client.admin_messages import MessageQueries
from rmqkit.client.message import MessageQueue
from rmqkit.common.names import retry_topic
from rmqkit.errors import BrokerResponseError, CorruptRecordError, RemotingError, error_for_code
from rmqkit.protocol.admin_bodies import decode_mq_table_json
from rmqkit.protocol.codes import RequestCode, ResponseCode
from rmqkit.protocol.message_id import decode_offset_msg_id, encode_offset_msg_id
from rmqkit.protocol.record import StoredMessage, format_host

CLIENT_CALL_TIMEOUT_MS = 20_000
"""Longer than the broker's wait for the client (10 s), so its CONSUME_MSG_TIMEOUT gets here."""


@dataclass(slots=True)
class ConsumerRunningInfo:
    """What one consumer client says of itself (RocketMQ's `ConsumerRunningInfo`)."""

    properties: dict[str, str]
    subscriptions: list[dict[str, Any]]
    queues: dict[MessageQueue, dict[str, Any]]
    """Per held queue: RocketMQ's `ProcessQueueInfo` fields (commitOffset, cachedMsgCount...)."""
    status: dict[str, dict[str, float]]
    """Per subscribed topic: pullRT, pullTPS, consumeRT, consumeOKTPS, consumeFailedTPS (last
    minute) and consumeFailedMsgs (last hour)."""
    jstack: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    """Fields of the answer not named above (a Java 5 client's mqPopTable, for one)."""

    @property
    def push(self) -> bool:
        return self.properties.get("PROP_CONSUME_TYPE") == "CONSUME_PASSIVELY"

    def to_json(self) -> dict[str, Any]:
        return {
            "properties": self.properties,
            "subscriptionSet": self.subscriptions,
            "mqTable": [
                {"topic": q.topic, "brokerName": q.broker_name, "queueId": q.queue_id, **info}
                for q, info in sorted(self.queues.items(), key=lambda kv: str(kv[0]))
            ],
            "statusTable": self.status,
            "jstack": self.jstack,
        }


def decode_running_info(body: bytes | memoryview) -> ConsumerRunningInfo:
    """Read a client's answer (Java's or rmqkit's: fastjson's MessageQueue-object keys)."""
    table, rest = decode_mq_table_json(body, "mqTable")
    subs = rest.pop("subscriptionSet", None) or []
    return ConsumerRunningInfo(
        properties={str(k): str(v) for k, v in (rest.pop("properties", None) or {}).items()},
        subscriptions=list(subs),
        queues={MessageQueue(t, b, q): info for (t, b, q), info in table.items()},
        status=dict(rest.pop("statusTable", None) or {}),
        jstack=rest.pop("jstack", None),
        extra=rest,
    )


class ConsumerCalls(MessageQueries):
    """The consumer-client calls of `AdminClient`."""

    async def _group_brokers(self, group: str) -> list[str]:
        """Brokers to ask about `group`'s clients: those of its retry topic (where mqadmin
        asks), then every other broker (a broadcasting group has no retry topic)."""
        addrs: list[str] = []
        try:
            for bd in (await self.route(retry_topic(group))).broker_datas:
                addr = read_addr(bd)
                if addr is not None:
                    addrs.append(addr)
        except (BrokerResponseError, RemotingError):
            pass
        addrs += [a for a in (await self.read_addrs()).values() if a not in addrs]
        return addrs

    async def consumer_running_info(
        self, group: str, client_id: str, *, jstack: bool = False
    ) -> ConsumerRunningInfo:
        """One client's running info, asked through the first broker it is connected to.

        Raises:
            BrokerResponseError: no broker has the client online (SYSTEM_ERROR), the client
                did not answer in time (CONSUME_MSG_TIMEOUT), or it does not consume for
                `group`.
        """
        last: BrokerResponseError | None = None
        for addr in await self._group_brokers(group):
            try:
                resp = await self._call(
                    addr, RequestCode.GET_CONSUMER_RUNNING_INFO, consumerGroup=group,
                    clientId=client_id, jstackEnable=str(jstack).lower(),
                    timeout_ms=CLIENT_CALL_TIMEOUT_MS,
                )  # fmt: skip
            except BrokerResponseError as exc:
                if "not online" not in str(exc):
                    raise  # the client answered (or timed out): another broker would say the same
                last = exc
                continue
            return decode_running_info(resp.body)
        raise last or error_for_code(ResponseCode.SYSTEM_ERROR)(
            f"no broker knows consumer group {group}"
        )

    async def consume_message_directly(
        self, group: str, client_id: str, msg_id: str, topic: str | None = None
    ) -> dict[str, Any]:
        """Have one push consumer of `group` run its listener on a message, and say how it went
        (`ConsumeMessageDirectlyResult`: consumeResult CR_SUCCESS, CR_LATER,
        CR_THROW_EXCEPTION..., remark, spentTimeMills). Nothing is committed or retried.

        `msg_id` is an offset message id, or, with `topic`, the id the producer gave the
        message (its UNIQ_KEY). The request goes to the broker that stored the message.
        """
        msg = await self._message_for(msg_id, topic)
        offset_id = encode_offset_msg_id(msg.store_host, msg.commit_log_offset)
        resp = await self._call(
            format_host(msg.store_host), RequestCode.CONSUME_MESSAGE_DIRECTLY,
            consumerGroup=group, clientId=client_id, msgId=offset_id, topic=msg.topic,
            timeout_ms=CLIENT_CALL_TIMEOUT_MS,
        )  # fmt: skip
        return dict(orjson.loads(resp.body))

    async def _message_for(self, msg_id: str, topic: str | None) -> StoredMessage:
        """The message `msg_id` names: by the producer's id in `topic`, else as an offset id
        (`view_message` raises CorruptRecordError with the reason when it is not one)."""
        if topic is not None:
            for m in await self.query_by_key(topic, msg_id):
                if m.uniq_key == msg_id:
                    return m
            try:
                decode_offset_msg_id(msg_id)
            except CorruptRecordError:
                raise error_for_code(ResponseCode.QUERY_NOT_FOUND)(
                    f"no message of topic {topic} has the id {msg_id}"
                ) from None
        return await self.view_message(msg_id)
