"""Client management and consumer offsets (RocketMQ `ClientManageProcessor`,
`ConsumerManageProcessor`): HEART_BEAT, UNREGISTER_CLIENT, GET_CONSUMER_LIST_BY_GROUP,
QUERY_CONSUMER_OFFSET, UPDATE_CONSUMER_OFFSET.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import orjson

from rmqkit.common.java_values import parse_bool
from rmqkit.protocol.codes import RequestCode, ResponseCode
from rmqkit.protocol.command import RemotingCommand
from rmqkit.protocol.heartbeat import HeartbeatError, decode_heartbeat
from rmqkit.remoting.connection import Connection, HandlerResult
from rmqkit.server.broker.clients import ClientChannel
from rmqkit.server.broker.headers import Header, HeaderProblem

if TYPE_CHECKING:
    from rmqkit.server.broker.broker import Broker


class ConsumerProcessor:
    def __init__(self, broker: Broker) -> None:
        self.broker = broker

    def __call__(self, conn: Connection, cmd: RemotingCommand) -> HandlerResult:
        try:
            if cmd.code == RequestCode.HEART_BEAT:
                return self.heartbeat(conn, cmd)
            h = Header(cmd.ext_fields)
            if cmd.code == RequestCode.UNREGISTER_CLIENT:
                self.broker.clients.unregister(
                    conn,
                    consumer_group=h.opt_text("consumerGroup"),
                    producer_group=h.opt_text("producerGroup"),
                )
                return cmd.response(ResponseCode.SUCCESS)
            if cmd.code == RequestCode.GET_CONSUMER_LIST_BY_GROUP:
                group = h.text("consumerGroup")
                ids = self.broker.clients.consumer_ids(group)
                if not ids:
                    return cmd.response(
                        ResponseCode.SYSTEM_ERROR, f"no consumer for this group, {group}"
                    )
                return cmd.response(
                    ResponseCode.SUCCESS, body=orjson.dumps({"consumerIdList": ids})
                )
            if cmd.code == RequestCode.QUERY_CONSUMER_OFFSET:
                return self.query_offset(cmd, h)
            if cmd.code == RequestCode.UPDATE_CONSUMER_OFFSET:
                self.broker.offsets.commit(
                    h.text("consumerGroup"), h.text("topic"), h.integer("queueId", 32),
                    h.integer("commitOffset"),
                )  # fmt: skip
                return cmd.response(ResponseCode.SUCCESS)
        except HeaderProblem as exc:
            return cmd.response(ResponseCode.SYSTEM_ERROR, str(exc))
        return cmd.response(ResponseCode.REQUEST_CODE_NOT_SUPPORTED, f"request type {cmd.code}")

    def heartbeat(self, conn: Connection, cmd: RemotingCommand) -> RemotingCommand:
        try:
            data = decode_heartbeat(cmd.body)
        except HeartbeatError as exc:
            return cmd.response(ResponseCode.SYSTEM_ERROR, str(exc))
        b = self.broker
        channel = ClientChannel(data.client_id, conn, cmd.language, cmd.version)
        for entry in data.consumers:
            group = b.groups.find(entry.group)
            if group is None:
                return cmd.response(
                    ResponseCode.SUBSCRIPTION_GROUP_NOT_EXIST,
                    f"subscription group [{entry.group}] does not exist "
                    "(autoCreateSubscriptionGroup is false)",
                )
            if entry.message_model == "CLUSTERING":
                _, created = b.topics.ensure_retry_topic(entry.group, group.retry_queue_nums)
                if created:
                    b.registration.register_soon()
            b.clients.register_consumer(entry, channel)
        for group_name in data.producer_groups:
            b.clients.register_producer(group_name, channel)
        return cmd.response(ResponseCode.SUCCESS)

    def query_offset(self, cmd: RemotingCommand, h: Header) -> RemotingCommand:
        b = self.broker
        group, topic, qid = h.text("consumerGroup"), h.text("topic"), h.integer("queueId", 32)
        offset = b.offsets.query(group, topic, qid)
        if offset >= 0:
            return cmd.response(ResponseCode.SUCCESS, ext_fields={"offset": str(offset)})
        # The Java broker answers 0 for a group's first look at a queue that still holds its
        # first message, so that a new group does not skip messages sent before it started.
        set_zero = parse_bool(h.opt_text("setZeroIfNotFound"), default=True)
        if set_zero and b.store.get_min_offset(topic, qid) <= 0:
            return cmd.response(ResponseCode.SUCCESS, ext_fields={"offset": "0"})
        return cmd.response(
            ResponseCode.QUERY_NOT_FOUND, "Not found, maybe this group consumer boot first"
        )
