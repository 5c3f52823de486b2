"""Admin requests about state (RocketMQ `AdminBrokerProcessor`): topic stats, consumer progress
and connections, offset reset by time, runtime stats, subscription groups, file deletion, and the
consumer and delay offset tables a slave copies (GET_ALL_CONSUMER_OFFSET, GET_ALL_DELAY_OFFSET).
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Any

import orjson

from rmqkit.common.group import SubscriptionGroupConfig
from rmqkit.common.names import retry_topic
from rmqkit.protocol.admin_bodies import MQKey, encode_mq_table_json
from rmqkit.protocol.codes import RequestCode, ResponseCode
from rmqkit.protocol.command import RemotingCommand
from rmqkit.protocol.route import encode_kv_table
from rmqkit.protocol.sync_bodies import encode_consumer_offsets, encode_delay_offsets
from rmqkit.remoting.connection import Connection, HandlerResult
from rmqkit.server.broker.headers import Header, HeaderProblem
from rmqkit.server.ha import HAClient, HAService

if TYPE_CHECKING:
    from rmqkit.server.broker.broker import Broker

_STARTED = time.time()


class AdminStatsProcessor:
    def __init__(self, broker: Broker) -> None:
        self.broker = broker
        self.handlers = {
            RequestCode.GET_TOPIC_STATS_INFO: self.topic_stats,
            RequestCode.GET_CONSUME_STATS: self.consume_stats,
            RequestCode.GET_CONSUMER_CONNECTION_LIST: self.consumer_connections,
            RequestCode.GET_PRODUCER_CONNECTION_LIST: self.producer_connections,
            RequestCode.INVOKE_BROKER_TO_RESET_OFFSET: self.reset_offset,
            RequestCode.GET_BROKER_RUNTIME_INFO: self.runtime_info,
            RequestCode.UPDATE_AND_CREATE_SUBSCRIPTIONGROUP: self.create_group,
            RequestCode.GET_ALL_SUBSCRIPTIONGROUP_CONFIG: self.all_groups,
            RequestCode.DELETE_SUBSCRIPTIONGROUP: self.delete_group,
            RequestCode.TRIGGER_DELETE_FILES: self.delete_files,
            RequestCode.QUERY_TOPIC_CONSUME_BY_WHO: self.consumed_by,
            RequestCode.GET_ALL_CONSUMER_OFFSET: self.all_consumer_offsets,
            RequestCode.GET_ALL_DELAY_OFFSET: self.all_delay_offsets,
        }

    def __call__(self, conn: Connection, cmd: RemotingCommand) -> HandlerResult:
        try:
            return self.handlers[RequestCode(cmd.code)](cmd, Header(cmd.ext_fields))
        except HeaderProblem as exc:
            return cmd.response(ResponseCode.SYSTEM_ERROR, str(exc))

    def _queues(self, topic: str) -> list[MQKey]:
        cfg = self.broker.topics.get(topic)
        n = cfg.read_queue_nums if cfg else 0
        return [(topic, self.broker.settings.broker_name, i) for i in range(n)]

    def topic_stats(self, cmd: RemotingCommand, h: Header) -> RemotingCommand:
        topic = h.text("topic")
        if self.broker.topics.get(topic) is None:
            return cmd.response(ResponseCode.TOPIC_NOT_EXIST, f"topic[{topic}] not exist")
        store = self.broker.store
        table: dict[MQKey, dict[str, Any]] = {}
        for key in self._queues(topic):
            qid = key[2]
            hi = store.get_max_offset(topic, qid)
            last = store.get_store_time(topic, qid, hi - 1) if hi > 0 else 0
            table[key] = {"minOffset": store.get_min_offset(topic, qid), "maxOffset": hi,
                          "lastUpdateTimestamp": max(last, 0)}  # fmt: skip
        return cmd.response(ResponseCode.SUCCESS, body=encode_mq_table_json("offsetTable", table))

    def consume_stats(self, cmd: RemotingCommand, h: Header) -> RemotingCommand:
        group = h.text("consumerGroup")
        only = h.opt_text("topic")
        b = self.broker
        topics = [only] if only else sorted(set(b.offsets.topics_of(group)) |
                                           set(b.clients.subscribed_topics(group)))  # fmt: skip
        table: dict[MQKey, dict[str, Any]] = {}
        for topic in topics:
            for key in self._queues(topic):
                qid = key[2]
                broker_off = b.store.get_max_offset(topic, qid)
                consumer_off = b.offsets.query(group, topic, qid)
                last = (
                    b.store.get_store_time(topic, qid, consumer_off - 1) if consumer_off > 0 else 0
                )
                table[key] = {"brokerOffset": broker_off, "consumerOffset": max(consumer_off, 0),
                              "lastTimestamp": max(last, 0)}  # fmt: skip
        if not table:
            return cmd.response(
                ResponseCode.SYSTEM_ERROR, f"group {group} has no offsets or subscriptions here"
            )
        return cmd.response(
            ResponseCode.SUCCESS, body=encode_mq_table_json("offsetTable", table, consumeTps=0.0)
        )

    def consumer_connections(self, cmd: RemotingCommand, h: Header) -> RemotingCommand:
        group = h.text("consumerGroup")
        info = self.broker.clients.consumers.get(group)
        if info is None or not info.clients:
            return cmd.response(
                ResponseCode.CONSUMER_NOT_ONLINE, f"the consumer group[{group}] not online"
            )
        body = {
            "connectionSet": [
                {"clientId": c.client_id, "clientAddr": c.conn.peer, "language": c.language,
                 "version": c.version}
                for c in info.clients.values()
            ],
            "subscriptionTable": {
                t: {"topic": s.topic, "subString": s.sub_string,
                    "expressionType": s.expression_type, "subVersion": s.sub_version,
                    "tagsSet": sorted(s.tags or ())}
                for t, s in info.subscriptions.items()
            },
            "consumeType": info.consume_type,
            "messageModel": info.message_model,
            "consumeFromWhere": info.consume_from_where,
        }  # fmt: skip
        return cmd.response(ResponseCode.SUCCESS, body=orjson.dumps(body))

    def producer_connections(self, cmd: RemotingCommand, h: Header) -> RemotingCommand:
        group = h.text("producerGroup")
        chans = self.broker.clients.producer_channels(group)
        if not chans:
            return cmd.response(ResponseCode.SYSTEM_ERROR, f"the producer group[{group}] not exist")
        body = {"connectionSet": [
            {"clientId": c.client_id, "clientAddr": c.conn.peer, "language": c.language,
             "version": c.version} for c in chans
        ]}  # fmt: skip
        return cmd.response(ResponseCode.SUCCESS, body=orjson.dumps(body))

    def reset_offset(self, cmd: RemotingCommand, h: Header) -> RemotingCommand:
        """Move a group's offsets on a topic to the first message stored at or after `timestamp`
        (-1: the end), and tell its live consumers (RESET_CONSUMER_CLIENT_OFFSET)."""
        topic, group, ts = h.text("topic"), h.text("group"), h.integer("timestamp")
        force = h.flag("isForce", True)
        b = self.broker
        table: dict[MQKey, int] = {}
        for key in self._queues(topic):
            qid = key[2]
            target = (
                b.store.get_max_offset(topic, qid)
                if ts < 0
                else (b.store.get_offset_by_time(topic, qid, ts))
            )
            current = b.offsets.query(group, topic, qid)
            if force or current < 0 or target < current:
                b.offsets.commit(group, topic, qid, target)
                table[key] = target
        body = encode_mq_table_json("offsetTable", {k: {"offset": v} for k, v in table.items()})
        info = b.clients.consumers.get(group)
        for ch in list(info.clients.values()) if info else []:
            if ch.conn.is_open:
                ch.conn.oneway(RemotingCommand(
                    RequestCode.RESET_CONSUMER_CLIENT_OFFSET,
                    ext_fields={"topic": topic, "group": group, "timestamp": str(ts),
                                "isForce": str(force).lower()},
                    body=body,
                ))  # fmt: skip
        return cmd.response(ResponseCode.SUCCESS, body=body)

    def runtime_info(self, cmd: RemotingCommand, h: Header) -> RemotingCommand:
        b = self.broker
        store = b.store
        usage = store.cleaner.disk_usage()
        table = {
            "brokerVersionDesc": "rmqkit",
            "brokerName": b.settings.broker_name,
            "runtime": f"{int(time.time() - _STARTED)}s",
            "commitLogMinOffset": str(store.min_physical_offset),
            "commitLogMaxOffset": str(store.max_physical_offset),
            "commitLogDiskRatio": f"{usage:.4f}",
            "dispatchBehindBytes": str(store.dispatch_behind_bytes),
            "pullHoldCount": str(b.pull_holds.count),
            "scheduleMessageDelivered": str(b.schedule.delivered),
            "transactionChecks": str(b.transactions.checks_sent),
            "pid": str(os.getpid()),
        }
        table.update(b.stats.runtime_info(time.monotonic()))
        earliest = store.earliest_message_time()
        if earliest >= 0:
            table["earliestMessageTimeStamp"] = str(earliest)
        table.update(b.timer.runtime_info())
        table.update(replication_info(b))
        return cmd.response(ResponseCode.SUCCESS, body=encode_kv_table(table))

    def create_group(self, cmd: RemotingCommand, h: Header) -> RemotingCommand:
        try:
            cfg = SubscriptionGroupConfig.from_json(orjson.loads(cmd.body))
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            return cmd.response(ResponseCode.SYSTEM_ERROR, f"bad subscription group body: {exc}")
        self.broker.groups.put(cfg)
        return cmd.response(ResponseCode.SUCCESS)

    def all_groups(self, cmd: RemotingCommand, h: Header) -> RemotingCommand:
        g = self.broker.groups
        body = {"subscriptionGroupTable": {n: c.to_json() for n, c in g.groups.items()},
                "dataVersion": g.data_version.to_json()}  # fmt: skip
        return cmd.response(ResponseCode.SUCCESS, body=orjson.dumps(body))

    def delete_group(self, cmd: RemotingCommand, h: Header) -> RemotingCommand:
        group = h.text("groupName")
        self.broker.groups.delete(group)
        self.broker.offsets.delete_group(group)
        self.broker.topics.delete(retry_topic(group))
        self.broker.registration.register_soon()
        return cmd.response(ResponseCode.SUCCESS)

    def delete_files(self, cmd: RemotingCommand, h: Header) -> RemotingCommand:
        deleted = self.broker.store.cleaner.clean(manual=True)
        return cmd.response(
            ResponseCode.SUCCESS, remark=f"{deleted} expired CommitLog files deleted"
        )

    def consumed_by(self, cmd: RemotingCommand, h: Header) -> RemotingCommand:
        topic = h.text("topic")
        b = self.broker
        groups = set(b.offsets.groups_of(topic))
        groups |= {g for g, info in b.clients.consumers.items() if topic in info.subscriptions}
        return cmd.response(ResponseCode.SUCCESS, body=orjson.dumps({"groupList": sorted(groups)}))

    def all_consumer_offsets(self, cmd: RemotingCommand, h: Header) -> RemotingCommand:
        """consumerOffset.json's content, as it is in memory now (slaves copy it)."""
        return cmd.response(
            ResponseCode.SUCCESS, body=encode_consumer_offsets(self.broker.offsets.table)
        )

    def all_delay_offsets(self, cmd: RemotingCommand, h: Header) -> RemotingCommand:
        """delayOffset.json's content: each delay level's next offset (slaves copy it)."""
        return cmd.response(
            ResponseCode.SUCCESS, body=encode_delay_offsets(self.broker.schedule.offsets)
        )


def replication_info(b: Broker) -> dict[str, str]:
    """The runtime-info entries about replication (rmqkit's own keys; RocketMQ has no list).

    A master: its HA address, how many slaves have reported, the highest offset one confirmed and
    how far the nearest is behind (`-1`: no slave). A slave: its master and whether the link is up.
    """
    s = b.settings
    out = {"brokerRole": s.broker_role, "brokerId": str(s.broker_id)}
    ha = b.ha
    if isinstance(ha, HAService):
        behind = ha.bytes_behind
        out.update(haServerAddr=b.ha_server_addr, haSlaveCount=str(ha.slave_count),
                   haSlaveAckOffset=str(ha.slave_ack_offset),
                   haSlaveBehindBytes=str(-1 if behind is None else behind))  # fmt: skip
    elif isinstance(ha, HAClient):
        out.update(masterAddr=b.master_addr or "", haMasterAddr=ha.master_ha_addr or "",
                   masterAlive=str(ha.master_alive).lower())  # fmt: skip
    return out
