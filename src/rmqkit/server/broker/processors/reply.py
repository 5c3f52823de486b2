"""SEND_REPLY_MESSAGE and SEND_REPLY_MESSAGE_V2 (RocketMQ `ReplyMessageProcessor`): request-reply.

A replier sends its reply like a message, to `<cluster>_REPLY_TOPIC`. The broker checks it as a
send, pushes it with PUSH_REPLY_MESSAGE_TO_CLIENT to the connected client named by the
REPLY_TO_CLIENT property, answers SUCCESS if the requester took it (SYSTEM_ERROR naming the client
if not), and, with `storeReplyMessageEnable` (default on), also stores it in its topic. The reply
topic exists on every broker from start-up (one queue, read-write), as `TopicConfigManager`
declares it. A slave refuses replies (SERVICE_NOT_AVAILABLE, as RocketMQ's store refuses a put on
a slave): requesters and repliers talk to the master.
"""

from __future__ import annotations

import logging
import random
import time
from typing import TYPE_CHECKING

from rmqkit.common.properties import (
    PROPERTY_SEPARATOR,
    Prop,
    decode_properties,
    encode_properties,
    find_property,
    reply_topic,
)
from rmqkit.common.topic import TopicConfig, perm_writable
from rmqkit.errors import RemotingError
from rmqkit.protocol.codes import RequestCode, ResponseCode
from rmqkit.protocol.command import RemotingCommand
from rmqkit.protocol.record import pack_host
from rmqkit.remoting.connection import Connection, HandlerResult
from rmqkit.server.broker.headers import Header, HeaderProblem
from rmqkit.server.broker.processors.send import SendProcessor
from rmqkit.server.broker.processors.send_back import slave_refusal
from rmqkit.server.store import MessageToStore
from rmqkit.server.store.results import STORED

if TYPE_CHECKING:
    from rmqkit.server.broker.broker import Broker

log = logging.getLogger("rmqkit.broker.reply")

PUSH_REPLY_TIMEOUT_S = 10.0
"""How long the broker waits for the requester to take a pushed reply (RocketMQ's
`Broker2Client.callClient` waits 10 s)."""
_STORED = STORED
"""Put statuses after which the reply is in the store (RocketMQ counts flush timeouts as put)."""
_PUSHED_FIELDS = (
    "producerGroup", "topic", "defaultTopic", "defaultTopicQueueNums", "queueId", "sysFlag",
    "bornTimestamp", "flag", "reconsumeTimes", "unitMode",
)  # fmt: skip
"""Send-header fields the push repeats (`ReplyMessageRequestHeader`); it adds properties, the
born and store hosts and the store time."""


def ensure_reply_topic(broker: Broker) -> TopicConfig:
    """Declare `<cluster>_REPLY_TOPIC` (1 queue, read-write) unless the topic table has it."""
    name = reply_topic(broker.settings.broker_cluster_name)
    return broker.topics.topics.setdefault(name, TopicConfig(name, 1, 1))


def find_client(broker: Broker, client_id: str) -> Connection | None:
    """The open connection of the client with this id: producers first (RocketMQ looks only
    there; rmqkit's requester is always one), then consumers."""
    clients = broker.clients
    groups = [*clients.producers.values(), *(info.clients for info in clients.consumers.values())]
    for members in groups:
        for conn, channel in members.items():
            if channel.client_id == client_id and conn.is_open:
                return conn
    return None


class ReplyProcessor(SendProcessor):
    """Serves SEND_REPLY_MESSAGE (full header names) and SEND_REPLY_MESSAGE_V2 (one-letter ones).

    Creating it declares the reply topic, so it must be created after the topic table is loaded.
    """

    def __init__(self, broker: Broker) -> None:
        super().__init__(broker)
        ensure_reply_topic(broker)

    def __call__(self, conn: Connection, cmd: RemotingCommand) -> HandlerResult:
        refusal = slave_refusal(self.broker, cmd, ResponseCode.SERVICE_NOT_AVAILABLE, "replies")
        if refusal is not None:
            return refusal
        try:
            if cmd.code == RequestCode.SEND_REPLY_MESSAGE:
                header = Header(cmd.ext_fields)
            else:
                header = Header.of_send_v2(cmd)
            topic = header.text("topic")
            refusal = self._check_broker(cmd, topic)
            if refusal is not None:
                return refusal
            cfg = self._topic_config(header, topic)
            if cfg is None:
                return cmd.response(
                    ResponseCode.TOPIC_NOT_EXIST, f"topic[{topic}] not exist, apply first please!"
                )
            if not perm_writable(cfg.perm):
                return cmd.response(
                    ResponseCode.NO_PERMISSION, f"the topic[{topic}] sending message is forbidden"
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
            # Checked here, as for a send: refused early, not in the push.
            header.integer("sysFlag", 32)
            header.integer("bornTimestamp")
            header.opt_int("flag", 0, 32)
            header.opt_int("reconsumeTimes", 0, 32)
        except HeaderProblem as exc:
            return cmd.response(ResponseCode.SYSTEM_ERROR, str(exc))
        return self._reply(conn, cmd, header, queue_id)

    async def _reply(
        self, conn: Connection, cmd: RemotingCommand, header: Header, queue_id: int
    ) -> RemotingCommand:
        props = header.opt_text("properties") or ""
        body = bytes(cmd.body)
        pushed, remark = await self._push(conn, header, props, body)
        s = self.broker.settings
        ext = {"MSG_REGION": s.region_id, "TRACE_ON": "true" if s.trace_on else "false"}
        if pushed:
            # RocketMQ answers msgId "0" and offset 0 for a reply it does not store.
            ext |= {"msgId": "0", "queueId": str(queue_id), "queueOffset": "0"}
        if self.broker.settings.store_reply_message_enable:
            ext |= await self._store_reply(conn, header, queue_id, props, body)
        if not pushed:
            return cmd.response(ResponseCode.SYSTEM_ERROR, remark, ext)
        return cmd.response(ResponseCode.SUCCESS, None, ext)

    async def _push(
        self, conn: Connection, header: Header, props: str, body: bytes
    ) -> tuple[bool, str]:
        """PUSH_REPLY_MESSAGE_TO_CLIENT to the requester; (pushed, why not)."""
        properties = decode_properties(props)
        client_id = properties.get(Prop.MESSAGE_REPLY_TO_CLIENT)
        if not client_id:
            log.warning("a reply without %s cannot be delivered", Prop.MESSAGE_REPLY_TO_CLIENT)
            return False, f"reply message properties[{Prop.MESSAGE_REPLY_TO_CLIENT}] is null"
        target = find_client(self.broker, client_id)
        if target is None:
            remark = f"push reply message fail, channel of <{client_id}> not found."
            log.warning("%s", remark)
            return False, remark
        properties[Prop.PUSH_REPLY_TIME] = str(int(time.time() * 1000))
        s = self.broker.settings
        fields = {k: v for k in _PUSHED_FIELDS if (v := header.opt_text(k)) is not None}
        fields |= {
            "properties": encode_properties(properties),
            "bornHost": f"{conn.peer_host[0]}:{conn.peer_host[1]}",
            "storeHost": f"{s.broker_ip1}:{s.listen_port}",
            "storeTimestamp": str(int(time.time() * 1000)),
        }
        push = RemotingCommand(
            RequestCode.PUSH_REPLY_MESSAGE_TO_CLIENT, ext_fields=fields, body=body
        )
        try:
            answer = await target.request(push, PUSH_REPLY_TIMEOUT_S)
        except RemotingError as exc:
            log.warning("push reply message to <%s> failed: %s", client_id, exc)
            return False, f"push reply message to {client_id} fail."
        if answer.code != ResponseCode.SUCCESS:
            log.warning("push reply message to <%s> refused: %s", client_id, answer.remark)
            return False, f"push reply message to {client_id} fail."
        return True, ""

    async def _store_reply(
        self, conn: Connection, header: Header, queue_id: int, props: str, body: bytes
    ) -> dict[str, str]:
        """Store the reply as it was sent; the answer's msgId and offset when it is stored."""
        topic = header.text("topic")
        if props and not props.endswith(PROPERTY_SEPARATOR):
            props += PROPERTY_SEPARATOR
        msg = MessageToStore(
            topic, queue_id, body, props, header.opt_int("flag", 0, 32),
            header.integer("sysFlag", 32), header.integer("bornTimestamp"),
            pack_host(*conn.peer_host), header.opt_int("reconsumeTimes", 0, 32),
            wait_store_ok=find_property(props, Prop.WAIT_STORE_MSG_OK) != "false",
        )  # fmt: skip
        r = await self.broker.store.put_message(msg)
        if r.status not in _STORED:
            log.warning("reply to %s not stored: %s %s", topic, r.status.name, r.remark)
            return {}
        self.broker.stats.put(1)
        return {"msgId": r.msg_id, "queueId": str(queue_id), "queueOffset": str(r.queue_offset)}
