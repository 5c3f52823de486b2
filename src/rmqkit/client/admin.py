"""AdminClient: what an operator, the CLI and the dashboard ask a cluster (RocketMQ
`DefaultMQAdminExt`): topics, routes, stats, consumer progress and connections, messages by id
and key, offset resets, and resending dead letters. Reads go to a broker's master, or to a slave
while the master is down (RocketMQ's `BrokerData.selectBrokerAddr`); writes go to masters only.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import orjson

from rmqkit.client.instance import ClientConfig, ClientInstance
from rmqkit.client.message import MessageQueue
from rmqkit.client.trace import TRACE_TOPIC, MessageTrace, build_trace
from rmqkit.common.names import DEFAULT_TOPIC, dlq_topic
from rmqkit.common.properties import Prop, encode_properties
from rmqkit.common.topic import PERM_RW
from rmqkit.errors import (
    BrokerResponseError,
    CorruptRecordError,
    RemotingError,
    TopicNotExistError,
    error_for_code,
)
from rmqkit.protocol.acl import SessionCredentials
from rmqkit.protocol.admin_bodies import decode_mq_table_json
from rmqkit.protocol.codes import RequestCode, ResponseCode
from rmqkit.protocol.command import RemotingCommand
from rmqkit.protocol.message_id import decode_offset_msg_id
from rmqkit.protocol.record import Host, StoredMessage, decode_records, format_host
from rmqkit.protocol.route import (
    MASTER_ID,
    BrokerData,
    ClusterInfo,
    TopicRouteData,
    decode_cluster_info,
    decode_kv_table,
)
from rmqkit.remoting.tls import ClientTls


def read_addr(bd: BrokerData) -> str | None:
    """Where to read from one broker: its master, else its lowest slave (None: no member)."""
    addrs = bd.broker_addrs
    return addrs.get(MASTER_ID) or (addrs[min(addrs)] if addrs else None)


@dataclass(slots=True)
class QueueProgress:
    """One queue of a consumer group: where the broker is, where the group is, the lag."""

    queue: MessageQueue
    broker_offset: int
    consumer_offset: int
    last_timestamp: int

    @property
    def lag(self) -> int:
        return max(0, self.broker_offset - self.consumer_offset)


class AdminClient:
    """Admin operations over the remoting protocol, against rmqkit or Apache RocketMQ.

    With `credentials`, every request is signed (brokers with `aclEnable=true`); creating and
    deleting topics and groups then needs an account with `admin: true`. With `tls`, it
    connects over TLS (see `rmqkit.remoting.tls.ClientTls`).
    """

    def __init__(
        self,
        namesrv_addr: str,
        *,
        instance_name: str = "ADMIN",
        credentials: SessionCredentials | None = None,
        tls: ClientTls | None = None,
    ) -> None:
        self.instance = ClientInstance.shared(
            ClientConfig(namesrv_addr, instance_name, credentials=credentials, tls=tls)
        )

    async def __aenter__(self) -> AdminClient:
        await self.instance.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.instance.stop()

    async def _call(self, addr: str, code: int, body: bytes = b"", **ext: Any) -> RemotingCommand:
        cmd = RemotingCommand(code, ext_fields={k: str(v) for k, v in ext.items()}, body=body)
        resp = await self.instance.invoke(addr, cmd, 10_000)
        if resp.code != ResponseCode.SUCCESS:
            raise error_for_code(resp.code)(
                resp.remark or "", addr=addr, request=RequestCode(code).name
            )
        return resp

    # -- cluster and topics -----------------------------------------------------------------------

    async def cluster(self) -> ClusterInfo:
        resp = await self.instance.invoke_namesrv(
            RemotingCommand(RequestCode.GET_BROKER_CLUSTER_INFO)
        )
        return decode_cluster_info(resp.body)

    async def broker_runtime(self, addr: str) -> dict[str, str]:
        """One broker's runtime info (GET_BROKER_RUNTIME_INFO): offsets, counters and, on
        rmqkit brokers, replication (`brokerRole`, `haSlaveCount`, `haSlaveBehindBytes`,
        `masterAlive` ...)."""
        resp = await self._call(addr, RequestCode.GET_BROKER_RUNTIME_INFO)
        return decode_kv_table(resp.body)

    async def master_addrs(self, cluster: str | None = None) -> dict[str, str]:
        """Broker name -> master address, for one cluster or all."""
        info = await self.cluster()
        names = set(info.cluster_addr_table.get(cluster, [])) if cluster else None
        return {n: bd.broker_addrs[0] for n, bd in info.broker_addr_table.items()
                if 0 in bd.broker_addrs and (names is None or n in names)}  # fmt: skip

    async def read_addrs(self, cluster: str | None = None) -> dict[str, str]:
        """Broker name -> where to read from it: its master, or its lowest slave while the
        master is down, for one cluster or all."""
        info = await self.cluster()
        names = set(info.cluster_addr_table.get(cluster, [])) if cluster else None
        return {n: addr for n, bd in info.broker_addr_table.items()
                if (names is None or n in names) and (addr := read_addr(bd))}  # fmt: skip

    async def topics(self) -> list[str]:
        resp = await self.instance.invoke_namesrv(
            RemotingCommand(RequestCode.GET_ALL_TOPIC_LIST_FROM_NAMESERVER)
        )
        return sorted(orjson.loads(resp.body).get("topicList", []))

    async def route(self, topic: str) -> TopicRouteData:
        route = await self.instance.route(topic, refresh=True)
        if route is None:
            raise TopicNotExistError(f"no route for topic {topic!r}", request="route")
        return route

    async def create_topic(self, topic: str, queues: int = 8, *, perm: int = PERM_RW,
                           order: bool = False, cluster: str | None = None) -> None:  # fmt: skip
        """Create or update `topic` on every master (of `cluster`)."""
        for addr in (await self.master_addrs(cluster)).values():
            await self._call(
                addr, RequestCode.UPDATE_AND_CREATE_TOPIC, topic=topic, defaultTopic=DEFAULT_TOPIC,
                readQueueNums=queues, writeQueueNums=queues, perm=perm,
                topicFilterType="SINGLE_TAG", topicSysFlag=0, order=str(order).lower(),
            )  # fmt: skip

    async def delete_topic(self, topic: str, cluster: str | None = None) -> None:
        """Delete `topic` from every master (of `cluster`) and from the NameServers."""
        for addr in (await self.master_addrs(cluster)).values():
            await self._call(addr, RequestCode.DELETE_TOPIC_IN_BROKER, topic=topic)
        for ns in self.instance.config.namesrv_addrs:
            await self._call(ns, RequestCode.DELETE_TOPIC_IN_NAMESRV, topic=topic)

    async def topic_stats(self, topic: str) -> dict[MessageQueue, tuple[int, int]]:
        """Queue -> (min offset, max offset), from every broker that has the topic."""
        out: dict[MessageQueue, tuple[int, int]] = {}
        for bd in (await self.route(topic)).broker_datas:
            addr = read_addr(bd)
            if addr is None:
                continue
            resp = await self._call(addr, RequestCode.GET_TOPIC_STATS_INFO, topic=topic)
            table, _ = decode_mq_table_json(resp.body, "offsetTable")
            for (t, b, q), v in table.items():
                out[MessageQueue(t, b, q)] = (int(v["minOffset"]), int(v["maxOffset"]))
        return out

    # -- consumers --------------------------------------------------------------------------------

    async def consumer_progress(self, group: str, topic: str | None = None) -> list[QueueProgress]:
        """Per queue: the broker's max offset, the group's committed offset, and the lag (from a
        slave for a broker whose master is down)."""
        out: list[QueueProgress] = []
        for addr in (await self.read_addrs()).values():
            try:
                ext: dict[str, Any] = {"consumerGroup": group}
                if topic:
                    ext["topic"] = topic
                resp = await self._call(addr, RequestCode.GET_CONSUME_STATS, **ext)
            except BrokerResponseError:
                continue  # this broker knows nothing of the group
            table, _ = decode_mq_table_json(resp.body, "offsetTable")
            out += [
                QueueProgress(MessageQueue(t, b, q), int(v["brokerOffset"]),
                              int(v["consumerOffset"]), int(v.get("lastTimestamp", 0)))
                for (t, b, q), v in table.items()
            ]  # fmt: skip
        return sorted(out, key=lambda p: (p.queue.topic, p.queue.broker_name, p.queue.queue_id))

    async def consumer_connections(self, group: str) -> dict[str, Any]:
        """The group's live clients and subscriptions, from the first broker that has them."""
        last: BrokerResponseError | None = None
        for addr in (await self.read_addrs()).values():
            try:
                resp = await self._call(addr, RequestCode.GET_CONSUMER_CONNECTION_LIST,
                                        consumerGroup=group)  # fmt: skip
                return dict(orjson.loads(resp.body))
            except BrokerResponseError as exc:
                last = exc
        raise last or error_for_code(ResponseCode.CONSUMER_NOT_ONLINE)(f"group {group} not online")

    async def reset_offset_by_time(
        self, group: str, topic: str, timestamp_ms: int
    ) -> dict[MessageQueue, int]:
        """Move the group to the first message stored at or after `timestamp_ms` (-1: the end)."""
        out: dict[MessageQueue, int] = {}
        for bd in (await self.route(topic)).broker_datas:
            addr = bd.broker_addrs.get(0)
            if addr is None:
                continue
            resp = await self._call(
                addr, RequestCode.INVOKE_BROKER_TO_RESET_OFFSET, topic=topic, group=group,
                timestamp=timestamp_ms, isForce="true",
            )  # fmt: skip
            table, _ = decode_mq_table_json(resp.body, "offsetTable")
            out.update({MessageQueue(t, b, q): int(v["offset"]) for (t, b, q), v in table.items()})
        return out

    # -- messages ---------------------------------------------------------------------------------

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
        from rmqkit.common.names import retry_topic

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
