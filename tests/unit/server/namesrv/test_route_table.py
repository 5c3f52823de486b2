"""RouteTable in process, with a fake clock: registration rules, removal, expiry, lookups."""

from __future__ import annotations

from typing import Any

import pytest

from rmqkit.common.topic import PERM_READ, DataVersion, TopicConfig
from rmqkit.protocol.route import QueueData
from rmqkit.server.namesrv.route_table import RouteTable

MASTER = "10.0.0.1:10911"
SLAVE = "10.0.0.2:10911"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def routes(clock: Clock) -> RouteTable:
    return RouteTable(default_timeout_ms=10_000, clock=clock)


def register(
    routes: RouteTable,
    addr: str = MASTER,
    broker_id: int = 0,
    topics: dict[str, int] | None = None,
    version: DataVersion | None = None,
    **kw: Any,
) -> Any:
    configs = {t: TopicConfig(t, n, n) for t, n in (topics or {"T": 4}).items()}
    return routes.register_broker(
        cluster=kw.pop("cluster", "c1"),
        broker_addr=addr,
        broker_name=kw.pop("broker_name", "broker-a"),
        broker_id=broker_id,
        ha_server_addr=addr.replace("10911", "10912"),
        topic_configs=configs,
        data_version=version or DataVersion(0, 1, 1),
        **kw,
    )


def test_master_and_slave_share_a_broker_name(routes: RouteTable) -> None:
    assert register(routes).master_addr is None
    result = register(routes, SLAVE, 1)
    assert (result.master_addr, result.ha_server_addr) == (MASTER, "10.0.0.1:10912")
    route = routes.route("T")
    assert route is not None
    assert route.queue_datas == [QueueData("broker-a", 4, 4)]
    assert route.broker_datas[0].broker_addrs == {0: MASTER, 1: SLAVE}
    assert routes.cluster_info().cluster_addr_table == {"c1": {"broker-a"}}


def test_slave_topics_do_not_create_queue_data(routes: RouteTable) -> None:
    register(routes, SLAVE, 1, topics={"OnlySlave": 2})
    assert routes.route("OnlySlave") is None
    assert routes.topics() == []


def test_queue_data_updates_only_when_data_version_changes(routes: RouteTable) -> None:
    register(routes, topics={"T": 4}, version=DataVersion(0, 1, 1))
    register(routes, topics={"T": 8}, version=DataVersion(0, 1, 1))
    route = routes.route("T")
    assert route is not None and route.queue_datas[0].write_queue_nums == 4
    register(routes, topics={"T": 8}, version=DataVersion(0, 2, 2))
    route = routes.route("T")
    assert route is not None and route.queue_datas[0].write_queue_nums == 8


def test_deleted_topic_comes_back_with_next_registration(routes: RouteTable) -> None:
    register(routes)
    routes.delete_topic("T")
    assert routes.route("T") is None
    register(routes)  # same data version, but the topic lacks this broker's queue data
    assert routes.route("T") is not None


def test_broker_id_change_for_same_address_replaces_old_id(routes: RouteTable) -> None:
    register(routes, SLAVE, 1)
    register(routes, SLAVE, 0)
    assert routes.broker_addr_table["broker-a"].broker_addrs == {0: SLAVE}


def test_older_state_version_cannot_take_an_id(routes: RouteTable) -> None:
    register(routes, MASTER, 0, version=DataVersion(5, 1, 1))
    register(routes, SLAVE, 0, version=DataVersion(4, 1, 1))
    assert routes.broker_addr_table["broker-a"].broker_addrs == {0: MASTER}
    assert ("c1", SLAVE) not in routes.live_table


def test_unregister_master_keeps_queues_while_slave_lives(routes: RouteTable) -> None:
    register(routes)
    register(routes, SLAVE, 1)
    routes.unregister_broker("c1", MASTER, "broker-a")
    route = routes.route("T")
    assert route is not None and route.broker_datas[0].broker_addrs == {1: SLAVE}
    routes.unregister_broker("c1", SLAVE, "broker-a")
    assert routes.route("T") is None
    assert routes.topics() == []
    assert routes.cluster_info().broker_addr_table == {}
    assert routes.cluster_info().cluster_addr_table == {}


def test_topic_on_two_brokers_survives_losing_one(routes: RouteTable) -> None:
    register(routes, topics={"T": 4, "A": 1})
    register(routes, "10.0.0.9:10911", 0, topics={"T": 2}, broker_name="broker-b")
    routes.unregister_broker("c1", MASTER, "broker-a")
    route = routes.route("T")
    assert route is not None and [q.broker_name for q in route.queue_datas] == ["broker-b"]
    assert [b.broker_name for b in route.broker_datas] == ["broker-b"]
    assert routes.route("A") is None


def test_expiry_uses_default_and_per_broker_timeouts(routes: RouteTable, clock: Clock) -> None:
    register(routes)
    register(routes, "10.0.0.9:10911", 0, broker_name="broker-b", timeout_ms=60_000)
    clock.now += 9
    assert routes.expire() == []
    routes.touch("c1", MASTER)
    clock.now += 9.5
    assert routes.expire() == []
    clock.now += 1
    assert [i.broker_addr for i in routes.expire()] == [MASTER]
    assert set(routes.broker_addr_table) == {"broker-b"}
    clock.now += 60
    assert [i.broker_addr for i in routes.expire()] == ["10.0.0.9:10911"]
    assert routes.topics() == []


def test_connection_closed_removes_only_its_brokers(routes: RouteTable) -> None:
    conn_a, conn_b = object(), object()
    register(routes, connection=conn_a)
    register(routes, SLAVE, 1, connection=conn_b)
    assert routes.connection_closed(conn_b) != []  # type: ignore[arg-type]
    assert routes.broker_addr_table["broker-a"].broker_addrs == {0: MASTER}
    register(routes, connection=conn_b)  # re-registered over a new connection
    assert routes.connection_closed(conn_a) == []  # type: ignore[arg-type]
    assert routes.route("T") is not None


def test_data_version_and_touch(routes: RouteTable, clock: Clock) -> None:
    assert routes.data_version("c1", MASTER) is None
    register(routes, version=DataVersion(0, 7, 3))
    assert routes.data_version("c1", MASTER) == DataVersion(0, 7, 3)
    clock.now += 5
    routes.touch("c1", MASTER)
    assert routes.live_table[("c1", MASTER)].last_update == clock.now


def test_topics_by_cluster_and_delete_by_cluster(routes: RouteTable) -> None:
    register(routes, topics={"T": 4, "A": 4})
    register(
        routes, "10.0.0.9:10911", 0, topics={"T": 4, "B": 4}, cluster="c2", broker_name="broker-b"
    )
    assert sorted(routes.topics_by_cluster("c1")) == ["A", "T"]
    assert sorted(routes.topics_by_cluster("c2")) == ["B", "T"]
    assert routes.topics_by_cluster("nope") == []
    routes.delete_topic("T", "c1")
    route = routes.route("T")
    assert route is not None and [q.broker_name for q in route.queue_datas] == ["broker-b"]
    routes.delete_topic("B", "c2")
    assert sorted(routes.topics()) == ["A", "T"]


def test_register_topic_needs_known_brokers(routes: RouteTable) -> None:
    assert not routes.register_topic("X", [QueueData("ghost", 1, 1)])
    register(routes)
    assert routes.register_topic("X", [QueueData("broker-a", 2, 2, PERM_READ)])
    route = routes.route("X")
    assert route is not None and route.queue_datas == [QueueData("broker-a", 2, 2, PERM_READ)]


def test_route_returns_copies(routes: RouteTable) -> None:
    register(routes)
    route = routes.route("T")
    assert route is not None
    route.broker_datas[0].broker_addrs[5] = "x"
    route.queue_datas[0].perm = 0
    again = routes.route("T")
    assert again is not None
    assert 5 not in again.broker_datas[0].broker_addrs and again.queue_datas[0].perm != 0
