"""AdminClient: what an operator and `rmqkit admin` ask a cluster (RocketMQ `DefaultMQAdminExt`):
topics, routes, stats, consumer group settings, progress and connections, producer connections,
broker configuration, NameServer KV config, messages by id and key, offset resets, and resending
dead letters. Reads go to a broker's master, or to a slave while the master is down (RocketMQ's
`BrokerData.selectBrokerAddr`); writes go to masters only, or to the one broker named.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import orjson

from rmqkit.client.admin_base import AdminBase, BrokerSummary, read_addr
from rmqkit.client.admin_consumers import ConsumerCalls, ConsumerRunningInfo
from rmqkit.client.message import MessageQueue
from rmqkit.common.group import SubscriptionGroupConfig
from rmqkit.common.java_properties import escape_value, parse_properties
from rmqkit.common.names import DEFAULT_TOPIC, is_system_group
from rmqkit.common.topic import PERM_RW
from rmqkit.errors import BrokerResponseError, error_for_code
from rmqkit.protocol.admin_bodies import decode_mq_table_json
from rmqkit.protocol.codes import RequestCode, ResponseCode
from rmqkit.protocol.command import RemotingCommand
from rmqkit.protocol.route import decode_kv_table, loads_lenient

__all__ = [
    "AdminBase", "AdminClient", "BrokerSummary", "ConsumerRunningInfo", "GroupSummary",
    "QueueProgress", "QueueStatus", "read_addr",
]  # fmt: skip


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


@dataclass(slots=True)
class QueueStatus:
    """One queue of a topic: the offsets it holds and when its last message was stored."""

    queue: MessageQueue
    min_offset: int
    max_offset: int
    last_update_timestamp: int


@dataclass(slots=True)
class GroupSummary:
    """One consumer group as `mqadmin consumerProgress` lists it without -g."""

    group: str
    count: int
    """Clients online."""
    consume_type: str | None
    """CONSUME_PASSIVELY (push) or CONSUME_ACTIVELY (pull); None while no client is online."""
    message_model: str | None
    """CLUSTERING or BROADCASTING; None while no client is online."""
    diff_total: int
    """Messages stored but not yet consumed, over all its queues."""


class AdminClient(ConsumerCalls):
    """Admin operations over the remoting protocol, against rmqkit or Apache RocketMQ.

    With `credentials`, every request is signed (brokers with `aclEnable=true`); creating and
    deleting topics and groups then needs an account with `admin: true`. With `tls`, it
    connects over TLS (see `rmqkit.remoting.tls.ClientTls`).
    """

    async def topics(self, cluster: str | None = None) -> list[str]:
        """Every topic the NameServers know, or those of one cluster's brokers."""
        cmd = (
            RemotingCommand(RequestCode.GET_TOPICS_BY_CLUSTER, ext_fields={"cluster": cluster})
            if cluster
            else RemotingCommand(RequestCode.GET_ALL_TOPIC_LIST_FROM_NAMESERVER)
        )
        resp = await self.instance.invoke_namesrv(cmd)
        if resp.code != ResponseCode.SUCCESS:
            raise error_for_code(resp.code)(resp.remark or "", request=RequestCode(cmd.code).name)
        return sorted(loads_lenient(resp.body, "TopicList").get("topicList", []))

    async def create_topic(
        self, topic: str, queues: int = 8, *, perm: int = PERM_RW, order: bool = False,
        cluster: str | None = None, broker_addr: str | None = None,
        read_queues: int | None = None, write_queues: int | None = None,
    ) -> list[str]:  # fmt: skip
        """Create or update `topic` on every master (of `cluster`), or on `broker_addr` alone;
        `queues` is both queue counts unless `read_queues`/`write_queues` say otherwise.
        Returns the brokers it went to."""
        addrs = await self.write_addrs(cluster, broker_addr)
        for addr in addrs:
            await self._call(
                addr, RequestCode.UPDATE_AND_CREATE_TOPIC, topic=topic, defaultTopic=DEFAULT_TOPIC,
                readQueueNums=queues if read_queues is None else read_queues,
                writeQueueNums=queues if write_queues is None else write_queues, perm=perm,
                topicFilterType="SINGLE_TAG", topicSysFlag=0, order=str(order).lower(),
            )  # fmt: skip
        return addrs

    async def delete_topic(self, topic: str, cluster: str | None = None) -> None:
        """Delete `topic` from every master (of `cluster`) and from the NameServers."""
        for addr in (await self.master_addrs(cluster)).values():
            await self._call(addr, RequestCode.DELETE_TOPIC_IN_BROKER, topic=topic)
        for ns in self.instance.config.namesrv_addrs:
            await self._call(ns, RequestCode.DELETE_TOPIC_IN_NAMESRV, topic=topic)

    async def topic_status(self, topic: str) -> list[QueueStatus]:
        """Every queue of `topic` on every broker that has it (from a slave while a master is
        down), in broker and queue order."""
        out: list[QueueStatus] = []
        for bd in (await self.route(topic)).broker_datas:
            addr = read_addr(bd)
            if addr is None:
                continue
            resp = await self._call(addr, RequestCode.GET_TOPIC_STATS_INFO, topic=topic)
            table, _ = decode_mq_table_json(resp.body, "offsetTable")
            out += [
                QueueStatus(MessageQueue(t, b, q), int(v["minOffset"]), int(v["maxOffset"]),
                            int(v.get("lastUpdateTimestamp", 0)))
                for (t, b, q), v in table.items()
            ]  # fmt: skip
        return sorted(out, key=lambda s: (s.queue.broker_name, s.queue.queue_id))

    async def topic_stats(self, topic: str) -> dict[MessageQueue, tuple[int, int]]:
        """Queue -> (min offset, max offset), from every broker that has the topic."""
        return {s.queue: (s.min_offset, s.max_offset) for s in await self.topic_status(topic)}

    async def topic_clusters(self, topic: str) -> list[str]:
        """The clusters whose brokers serve `topic`."""
        names = {bd.broker_name for bd in (await self.route(topic)).broker_datas}
        info = await self.cluster()
        return sorted(c for c, brokers in info.cluster_addr_table.items() if names & set(brokers))

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

    async def group_summaries(self) -> list[GroupSummary]:
        """Every consumer group the brokers know (system groups left out), sorted by name,
        with its online clients and total lag."""
        names: set[str] = set()
        for addr in (await self.read_addrs()).values():
            names |= {g for g in await self.groups(addr) if not is_system_group(g)}
        out = []
        for g in sorted(names):
            try:
                conn = await self.consumer_connections(g)
            except BrokerResponseError:
                conn = {}
            lag = sum(p.lag for p in await self.consumer_progress(g))
            clients = len(conn.get("connectionSet", []))
            out.append(
                GroupSummary(g, clients, conn.get("consumeType"), conn.get("messageModel"), lag)
            )
        return out

    async def topic_consumers(self, topic: str) -> list[str]:
        """The consumer groups that have offsets on `topic` or subscribe to it, on any broker
        that serves it (QUERY_TOPIC_CONSUME_BY_WHO)."""
        groups: set[str] = set()
        for bd in (await self.route(topic)).broker_datas:
            addr = read_addr(bd)
            if addr is None:
                continue
            resp = await self._call(addr, RequestCode.QUERY_TOPIC_CONSUME_BY_WHO, topic=topic)
            groups |= set(orjson.loads(resp.body or b"{}").get("groupList") or ())
        return sorted(groups)

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

    async def groups(self, addr: str) -> dict[str, SubscriptionGroupConfig]:
        """One broker's consumer group settings (GET_ALL_SUBSCRIPTIONGROUP_CONFIG)."""
        resp = await self._call(addr, RequestCode.GET_ALL_SUBSCRIPTIONGROUP_CONFIG)
        table = loads_lenient(resp.body, "SubscriptionGroupWrapper").get("subscriptionGroupTable")
        return {str(n): SubscriptionGroupConfig.from_json(c) for n, c in (table or {}).items()}

    async def update_group(
        self, group: str, *, cluster: str | None = None, broker_addr: str | None = None,
        **changes: Any,
    ) -> list[str]:  # fmt: skip
        """Create or change `group`'s settings on every master (of `cluster`), or on
        `broker_addr` alone. `changes` are `SubscriptionGroupConfig` fields; the others keep
        the broker's current value (a new group: RocketMQ's defaults). Returns the brokers."""
        addrs = await self.write_addrs(cluster, broker_addr)
        for addr in addrs:
            current = (await self.groups(addr)).get(group) or SubscriptionGroupConfig(group)
            cfg = dataclasses.replace(current, **changes)
            body = orjson.dumps(cfg.to_json())
            await self._call(addr, RequestCode.UPDATE_AND_CREATE_SUBSCRIPTIONGROUP, body)
        return addrs

    async def delete_group(
        self, group: str, *, cluster: str | None = None, broker_addr: str | None = None
    ) -> list[str]:
        """Delete `group`'s settings, offsets and retry topic from every master (of `cluster`),
        or from `broker_addr` alone. Returns the brokers."""
        addrs = await self.write_addrs(cluster, broker_addr)
        for addr in addrs:
            await self._call(addr, RequestCode.DELETE_SUBSCRIPTIONGROUP, groupName=group)
        return addrs

    async def producer_connections(self, group: str) -> list[dict[str, Any]]:
        """The producers of `group` connected to any master, one entry per broker and client."""
        out: list[dict[str, Any]] = []
        for addr in (await self.master_addrs()).values():
            try:
                resp = await self._call(addr, RequestCode.GET_PRODUCER_CONNECTION_LIST,
                                        producerGroup=group)  # fmt: skip
            except BrokerResponseError:
                continue  # none of the group's producers is connected to this broker
            conns = loads_lenient(resp.body, "ProducerConnection").get("connectionSet", [])
            out += [{"brokerAddr": addr, **conn} for conn in conns]
        return out

    async def broker_config(self, addr: str) -> dict[str, str]:
        """The configuration one broker runs with (GET_BROKER_CONFIG), key by key."""
        resp = await self._call(addr, RequestCode.GET_BROKER_CONFIG)
        return parse_properties(bytes(resp.body or b"").decode("utf-8"))

    async def update_broker_config(self, addr: str, props: dict[str, str]) -> str:
        """Set broker.properties keys on one broker (UPDATE_BROKER_CONFIG); its remark, which
        on an rmqkit broker says which keys apply now and which at its next start."""
        body = "".join(f"{k}={escape_value(v)}\n" for k, v in props.items()).encode("utf-8")
        resp = await self._call(addr, RequestCode.UPDATE_BROKER_CONFIG, body)
        return resp.remark or ""

    async def cluster_member_addrs(self, cluster: str) -> list[str]:
        """The address of every master and slave of `cluster` (none if no such cluster)."""
        info = await self.cluster()
        return [addr for name in sorted(info.cluster_addr_table.get(cluster, ()))
                if (bd := info.broker_addr_table.get(name))
                for _, addr in sorted(bd.broker_addrs.items())]  # fmt: skip

    async def put_kv(self, namespace: str, key: str, value: str) -> None:
        """Set a KV config item on every NameServer (they share nothing)."""
        for ns in self.instance.config.namesrv_addrs:
            await self._call(ns, RequestCode.PUT_KV_CONFIG, namespace=namespace, key=key,
                             value=value)  # fmt: skip

    async def delete_kv(self, namespace: str, key: str) -> None:
        """Delete a KV config item from every NameServer."""
        for ns in self.instance.config.namesrv_addrs:
            await self._call(ns, RequestCode.DELETE_KV_CONFIG, namespace=namespace, key=key)

    async def get_kv(self, namespace: str, key: str | None = None) -> dict[str, str]:
        """One item (`key`), or every item of `namespace`, from the first NameServer that has
        it; empty when none has."""
        for ns in self.instance.config.namesrv_addrs:
            try:
                if key is None:
                    resp = await self._call(ns, RequestCode.GET_KVLIST_BY_NAMESPACE,
                                            namespace=namespace)  # fmt: skip
                    return decode_kv_table(resp.body)
                resp = await self._call(ns, RequestCode.GET_KV_CONFIG, namespace=namespace,
                                        key=key)  # fmt: skip
                return {key: resp.ext_fields.get("value", "")}
            except BrokerResponseError as exc:
                if exc.code != ResponseCode.QUERY_NOT_FOUND:
                    raise
        return {}
