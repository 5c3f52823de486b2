"""RouteTable: which brokers are alive and which topics they carry (RocketMQ's RouteInfoManager).

Plain in-memory tables changed only by synchronous methods, so each call is atomic on the event
loop and needs no lock. Time comes from an injected monotonic clock (seconds).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, TypeAlias

from rmqkit.common.topic import DataVersion, TopicConfig
from rmqkit.common.types import BrokerAddr, BrokerName, TopicName
from rmqkit.protocol.route import (
    MASTER_ID,
    BrokerData,
    BrokerId,
    ClusterInfo,
    ClusterName,
    QueueData,
    TopicRouteData,
)

if TYPE_CHECKING:
    from rmqkit.remoting.connection import Connection

log = logging.getLogger("rmqkit.namesrv.routes")

BrokerKey: TypeAlias = tuple[ClusterName, BrokerAddr]
"""A broker process, as RocketMQ keys its live table: cluster name and address."""


@dataclass(slots=True)
class BrokerLiveInfo:
    """When a broker process was last heard from, and what it last registered."""

    cluster: ClusterName
    broker_addr: BrokerAddr
    last_update: float
    """Monotonic seconds of the last registration, heartbeat or data version query."""
    timeout_s: float
    data_version: DataVersion
    connection: Connection | None
    ha_server_addr: str


@dataclass(slots=True)
class RegisterResult:
    """What REGISTER_BROKER answers: the master's HA and broker addresses, for a slave."""

    ha_server_addr: str | None = None
    master_addr: BrokerAddr | None = None


class RouteTable:
    """topic -> broker name -> QueueData, broker name -> BrokerData, cluster -> broker names."""

    def __init__(
        self, default_timeout_ms: int = 120_000, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.default_timeout_ms = default_timeout_ms
        self.clock = clock
        self.topic_queue_table: dict[TopicName, dict[BrokerName, QueueData]] = {}
        self.broker_addr_table: dict[BrokerName, BrokerData] = {}
        self.cluster_addr_table: dict[ClusterName, set[BrokerName]] = {}
        self.live_table: dict[BrokerKey, BrokerLiveInfo] = {}

    # -- registration -----------------------------------------------------------------------------

    def register_broker(
        self,
        *,
        cluster: ClusterName,
        broker_addr: BrokerAddr,
        broker_name: BrokerName,
        broker_id: BrokerId,
        ha_server_addr: str,
        topic_configs: dict[TopicName, TopicConfig],
        data_version: DataVersion,
        connection: Connection | None = None,
        timeout_ms: int | None = None,
        zone_name: str | None = None,
        enable_acting_master: bool = False,
    ) -> RegisterResult:
        """Record a broker's registration; a master's topics update the queue data."""
        result = RegisterResult()
        self.cluster_addr_table.setdefault(cluster, set()).add(broker_name)
        broker = self.broker_addr_table.get(broker_name)
        register_first = broker is None
        if broker is None:
            broker = BrokerData(cluster, broker_name)
            self.broker_addr_table[broker_name] = broker
        broker.zone_name = zone_name
        broker.enable_acting_master = enable_acting_master
        addrs = broker.broker_addrs

        # One address holds one id: a slave promoted to master first drops its old id.
        for old_id in [i for i, a in addrs.items() if a == broker_addr and i != broker_id]:
            del addrs[old_id]

        # Another process already holds this id with a newer state version: ignore this one.
        old_addr = addrs.get(broker_id)
        if old_addr is not None and old_addr != broker_addr:
            holder = self.live_table.get((cluster, old_addr))
            if (
                holder is not None
                and holder.data_version.state_version > data_version.state_version
            ):
                log.warning(
                    "ignoring %s as id %d of %s: %s holds it with a newer state version",
                    broker_addr,
                    broker_id,
                    broker_name,
                    old_addr,
                )
                self.live_table.pop((cluster, broker_addr), None)
                return result

        addrs[broker_id] = broker_addr
        register_first = register_first or not old_addr
        key = (cluster, broker_addr)
        prev = self.live_table.get(key)
        version_changed = prev is None or prev.data_version != data_version

        if broker_id == MASTER_ID:
            for config in topic_configs.values():
                if register_first or version_changed or self._lacks_queue(config, broker_name):
                    self._put_queue_data(broker_name, config)

        timeout = self.default_timeout_ms if timeout_ms is None else timeout_ms
        self.live_table[key] = BrokerLiveInfo(
            cluster,
            broker_addr,
            self.clock(),
            timeout / 1000,
            data_version,
            connection,
            ha_server_addr,
        )
        if prev is None:
            log.info(
                "broker registered: %s %s id %d at %s", cluster, broker_name, broker_id, broker_addr
            )

        if broker_id != MASTER_ID:
            master_addr = addrs.get(MASTER_ID)
            master = None if master_addr is None else self.live_table.get((cluster, master_addr))
            if master is not None:
                result.ha_server_addr = master.ha_server_addr
                result.master_addr = master_addr
        return result

    def _lacks_queue(self, config: TopicConfig, broker_name: BrokerName) -> bool:
        return broker_name not in self.topic_queue_table.get(config.topic_name, {})

    def _put_queue_data(self, broker_name: BrokerName, config: TopicConfig) -> None:
        queue = QueueData(
            broker_name,
            config.read_queue_nums,
            config.write_queue_nums,
            config.perm,
            config.topic_sys_flag,
        )
        queues = self.topic_queue_table.setdefault(config.topic_name, {})
        if queues.get(broker_name) != queue:
            log.info("topic %s on %s: %s", config.topic_name, broker_name, queue)
            queues[broker_name] = queue

    def register_topic(self, topic: TopicName, queues: list[QueueData]) -> bool:
        """REGISTER_TOPIC_IN_NAMESRV: add queue data of known broker names (all or nothing)."""
        if not queues or any(q.broker_name not in self.broker_addr_table for q in queues):
            return False
        table = self.topic_queue_table.setdefault(topic, {})
        for q in queues:
            table[q.broker_name] = replace(q)
        return True

    def touch(self, cluster: ClusterName, broker_addr: BrokerAddr) -> None:
        """A sign of life (heartbeat, data version query) from a registered broker."""
        info = self.live_table.get((cluster, broker_addr))
        if info is not None:
            info.last_update = self.clock()

    def data_version(self, cluster: ClusterName, broker_addr: BrokerAddr) -> DataVersion | None:
        info = self.live_table.get((cluster, broker_addr))
        return None if info is None else info.data_version

    # -- removal ----------------------------------------------------------------------------------

    def unregister_broker(
        self, cluster: ClusterName, broker_addr: BrokerAddr, broker_name: BrokerName
    ) -> None:
        """Forget one broker process; a broker name left with no address loses its queues."""
        self.live_table.pop((cluster, broker_addr), None)
        broker = self.broker_addr_table.get(broker_name)
        if broker is None:
            return
        for bid in [i for i, a in broker.broker_addrs.items() if a == broker_addr]:
            del broker.broker_addrs[bid]
        log.info("broker unregistered: %s %s at %s", cluster, broker_name, broker_addr)
        if broker.broker_addrs:
            return
        del self.broker_addr_table[broker_name]
        names = self.cluster_addr_table.get(cluster)
        if names is not None:
            names.discard(broker_name)
            if not names:
                del self.cluster_addr_table[cluster]
        for topic in list(self.topic_queue_table):
            queues = self.topic_queue_table[topic]
            queues.pop(broker_name, None)
            if not queues:
                del self.topic_queue_table[topic]

    def _unregister_key(self, key: BrokerKey) -> BrokerLiveInfo | None:
        info = self.live_table.get(key)
        cluster, addr = key
        for broker in self.broker_addr_table.values():
            if broker.cluster == cluster and addr in broker.broker_addrs.values():
                self.unregister_broker(cluster, addr, broker.broker_name)
                break
        else:
            self.live_table.pop(key, None)
        return info

    def expire(self) -> list[BrokerLiveInfo]:
        """Remove brokers silent for longer than their timeout; return what was removed."""
        now = self.clock()
        stale = [k for k, i in self.live_table.items() if i.last_update + i.timeout_s < now]
        removed = [info for key in stale if (info := self._unregister_key(key)) is not None]
        for info in removed:
            log.warning(
                "broker %s of %s expired after %.1fs of silence",
                info.broker_addr,
                info.cluster,
                info.timeout_s,
            )
        return removed

    def connection_closed(self, connection: Connection) -> list[BrokerLiveInfo]:
        """Remove the brokers whose latest registration came over `connection`."""
        keys = [k for k, i in self.live_table.items() if i.connection is connection]
        return [info for key in keys if (info := self._unregister_key(key)) is not None]

    def delete_topic(self, topic: TopicName, cluster: ClusterName | None = None) -> None:
        """Forget a topic everywhere, or only on the broker names of one cluster."""
        if not cluster:
            self.topic_queue_table.pop(topic, None)
            return
        queues = self.topic_queue_table.get(topic)
        if queues is None:
            return
        for name in self.cluster_addr_table.get(cluster, set()):
            queues.pop(name, None)
        if not queues:
            del self.topic_queue_table[topic]

    # -- lookups ----------------------------------------------------------------------------------

    def route(self, topic: TopicName) -> TopicRouteData | None:
        """The route of a topic (copies), or None when no live broker carries it."""
        queues = self.topic_queue_table.get(topic)
        if not queues:
            return None
        brokers = [
            self.broker_addr_table[name].copy() for name in queues if name in self.broker_addr_table
        ]
        if not brokers:
            return None
        return TopicRouteData(
            queue_datas=[replace(q) for q in queues.values()], broker_datas=brokers
        )

    def cluster_info(self) -> ClusterInfo:
        return ClusterInfo(
            broker_addr_table={k: v.copy() for k, v in self.broker_addr_table.items()},
            cluster_addr_table={k: set(v) for k, v in self.cluster_addr_table.items()},
        )

    def topics(self) -> list[TopicName]:
        return list(self.topic_queue_table)

    def topics_by_cluster(self, cluster: ClusterName) -> list[TopicName]:
        names = self.cluster_addr_table.get(cluster, set())
        return [t for t, queues in self.topic_queue_table.items() if not names.isdisjoint(queues)]
