"""A NameServer on real loopback sockets: registration, routes, cluster info, expiry, KV config."""

from __future__ import annotations

from pathlib import Path

import orjson

from rmqkit.common.topic import DataVersion
from rmqkit.protocol.codes import RequestCode, ResponseCode
from rmqkit.protocol.route import (
    BrokerData,
    QueueData,
    TopicRouteData,
    decode_cluster_info,
    decode_data_version,
    decode_kv_table,
    decode_topic_list,
    decode_topic_route,
    encode_data_version,
    encode_topic_route,
)
from rmqkit.remoting.client import RemotingClient
from rmqkit.server.namesrv import NameServer, NameServerSettings
from rmqkit.testing import check_for
from tests.unit.server.namesrv.wire import (
    MASTER,
    SLAVE,
    register_request,
    request,
    route_request,
)


async def test_master_and_slave_register_and_route(
    namesrv: NameServer, client: RemotingClient
) -> None:
    master = await client.invoke(namesrv.addr, register_request(MASTER, 0))
    assert master.code == ResponseCode.SUCCESS
    assert "masterAddr" not in master.ext_fields
    assert decode_kv_table(master.body) == {}
    slave = await client.invoke(namesrv.addr, register_request(SLAVE, 1))
    assert slave.code == ResponseCode.SUCCESS
    assert slave.ext_fields == {"masterAddr": MASTER, "haServerAddr": "127.0.0.1:10912"}

    resp = await client.invoke(namesrv.addr, route_request("T"))
    assert resp.code == ResponseCode.SUCCESS
    body = bytes(resp.body)
    assert b'"brokerAddrs":{"0":"127.0.0.1:10911","1":"127.0.0.1:10921"}' in body
    assert decode_topic_route(body) == TopicRouteData(
        queue_datas=[QueueData("broker-a", 4, 4)],
        broker_datas=[BrokerData("DefaultCluster", "broker-a", {0: MASTER, 1: SLAVE})],
    )
    assert orjson.loads(body)["filterServerTable"] == {}


async def test_unknown_topic(namesrv: NameServer, client: RemotingClient) -> None:
    resp = await client.invoke(namesrv.addr, route_request("Nope"))
    assert resp.code == ResponseCode.TOPIC_NOT_EXIST
    assert resp.remark == "No topic route info in name server for the topic: Nope"


async def test_order_topic_conf_comes_from_kv(namesrv: NameServer, client: RemotingClient) -> None:
    put = request(
        RequestCode.PUT_KV_CONFIG, namespace="ORDER_TOPIC_CONFIG", key="T", value="broker-a:4"
    )
    assert (await client.invoke(namesrv.addr, put)).code == ResponseCode.SUCCESS
    reg = await client.invoke(namesrv.addr, register_request())
    assert decode_kv_table(reg.body) == {"T": "broker-a:4"}
    route = decode_topic_route((await client.invoke(namesrv.addr, route_request("T"))).body)
    assert route.order_topic_conf == "broker-a:4"


async def test_cluster_info_and_topic_lists(namesrv: NameServer, client: RemotingClient) -> None:
    await client.invoke(namesrv.addr, register_request(topics={"T": 4, "A": 1}))
    other = register_request("127.0.0.1:20911", 0, {"B": 2}, cluster="C2", broker_name="broker-b")
    await client.invoke(namesrv.addr, other)

    info = decode_cluster_info(
        (await client.invoke(namesrv.addr, request(RequestCode.GET_BROKER_CLUSTER_INFO))).body
    )
    assert info.cluster_addr_table == {"DefaultCluster": {"broker-a"}, "C2": {"broker-b"}}
    assert info.broker_addr_table["broker-b"].broker_addrs == {0: "127.0.0.1:20911"}

    all_topics = await client.invoke(
        namesrv.addr, request(RequestCode.GET_ALL_TOPIC_LIST_FROM_NAMESERVER)
    )
    assert sorted(decode_topic_list(all_topics.body).topics) == ["A", "B", "T"]
    by_cluster = await client.invoke(
        namesrv.addr, request(RequestCode.GET_TOPICS_BY_CLUSTER, cluster="C2")
    )
    assert decode_topic_list(by_cluster.body).topics == ["B"]

    delete = request(RequestCode.DELETE_TOPIC_IN_NAMESRV, topic="A")
    assert (await client.invoke(namesrv.addr, delete)).code == ResponseCode.SUCCESS
    gone = await client.invoke(namesrv.addr, route_request("A"))
    assert gone.code == ResponseCode.TOPIC_NOT_EXIST


async def test_register_topic_in_namesrv(namesrv: NameServer, client: RemotingClient) -> None:
    await client.invoke(namesrv.addr, register_request())
    body = encode_topic_route(TopicRouteData(queue_datas=[QueueData("broker-a", 2, 2)]))
    reg = request(RequestCode.REGISTER_TOPIC_IN_NAMESRV, body, topic="New")
    assert (await client.invoke(namesrv.addr, reg)).code == ResponseCode.SUCCESS
    route = decode_topic_route((await client.invoke(namesrv.addr, route_request("New"))).body)
    assert route.queue_datas == [QueueData("broker-a", 2, 2)]


async def test_query_data_version_and_heartbeat(
    namesrv: NameServer, client: RemotingClient
) -> None:
    version = DataVersion(0, 1700000000000, 4)
    ids = {"brokerName": "broker-a", "brokerAddr": MASTER, "clusterName": "DefaultCluster"}

    async def query(v: DataVersion) -> tuple[str, bytes]:
        cmd = request(RequestCode.QUERY_DATA_VERSION, encode_data_version(v), brokerId="0", **ids)
        resp = await client.invoke(namesrv.addr, cmd)
        assert resp.code == ResponseCode.SUCCESS
        return resp.ext_fields["changed"], bytes(resp.body)

    assert await query(version) == ("true", b"")  # not registered yet
    await client.invoke(namesrv.addr, register_request(version=version))
    changed, body = await query(version)
    assert changed == "false" and decode_data_version(body) == version
    changed, body = await query(DataVersion(0, 1700000000001, 5))
    assert changed == "true" and decode_data_version(body) == version

    beat = request(RequestCode.BROKER_HEARTBEAT, **ids)
    assert (await client.invoke(namesrv.addr, beat)).code == ResponseCode.SUCCESS


async def test_unregister_broker(namesrv: NameServer, client: RemotingClient) -> None:
    await client.invoke(namesrv.addr, register_request())
    unreg = request(
        RequestCode.UNREGISTER_BROKER,
        brokerName="broker-a",
        brokerAddr=MASTER,
        clusterName="DefaultCluster",
        brokerId="0",
    )
    assert (await client.invoke(namesrv.addr, unreg)).code == ResponseCode.SUCCESS
    resp = await client.invoke(namesrv.addr, route_request("T"))
    assert resp.code == ResponseCode.TOPIC_NOT_EXIST


async def test_silent_broker_expires(client: RemotingClient) -> None:
    settings = NameServerSettings(
        host="127.0.0.1", listen_port=0, broker_expire_ms=150, scan_interval_ms=20
    )
    async with NameServer(settings) as ns, RemotingClient() as silent:
        await silent.invoke(ns.addr, register_request(topics={"Short": 1}))
        silent_conn = await silent.connection(ns.addr)
        long_lived = register_request(
            "127.0.0.1:20911",
            0,
            {"Long": 1},
            broker_name="broker-b",
            heartbeatTimeoutMillis="60000",
        )
        await client.invoke(ns.addr, long_lived)

        async def short_gone() -> bool:
            resp = await client.invoke(ns.addr, route_request("Short"))
            return resp.code == ResponseCode.TOPIC_NOT_EXIST

        await check_for(short_gone, timeout=3.0)
        # As Java does, expiry also closed the connection the silent broker registered over.
        await check_for(silent_conn.closed.done)
        resp = await client.invoke(ns.addr, route_request("Long"))
        assert resp.code == ResponseCode.SUCCESS


async def test_broker_removed_when_its_connection_closes(namesrv: NameServer) -> None:
    observer = RemotingClient()
    async with observer:
        async with RemotingClient() as broker:
            await broker.invoke(namesrv.addr, register_request())
        # The broker's client is closed now; its registration goes with its connection.

        async def gone() -> bool:
            resp = await observer.invoke(namesrv.addr, route_request("T"))
            return resp.code == ResponseCode.TOPIC_NOT_EXIST

        await check_for(gone)


async def test_kv_config_over_the_wire(namesrv: NameServer, client: RemotingClient) -> None:
    async def call(code: RequestCode, **ext: str) -> tuple[int, str | None, dict[str, str], bytes]:
        resp = await client.invoke(namesrv.addr, request(code, **ext))
        return resp.code, resp.remark, resp.ext_fields, bytes(resp.body)

    code, remark, _, _ = await call(RequestCode.GET_KV_CONFIG, namespace="ns", key="k")
    assert code == ResponseCode.QUERY_NOT_FOUND
    assert remark == "No config item, Namespace: ns Key: k"
    code, remark, _, _ = await call(RequestCode.GET_KVLIST_BY_NAMESPACE, namespace="ns")
    assert (code, remark) == (ResponseCode.QUERY_NOT_FOUND, "No config item, Namespace: ns")

    assert (await call(RequestCode.PUT_KV_CONFIG, namespace="ns", key="k", value="v"))[0] == 0
    code, _, ext, _ = await call(RequestCode.GET_KV_CONFIG, namespace="ns", key="k")
    assert (code, ext) == (ResponseCode.SUCCESS, {"value": "v"})
    code, _, _, body = await call(RequestCode.GET_KVLIST_BY_NAMESPACE, namespace="ns")
    assert decode_kv_table(body) == {"k": "v"}
    assert (await call(RequestCode.DELETE_KV_CONFIG, namespace="ns", key="k"))[0] == 0
    code, _, _, _ = await call(RequestCode.GET_KV_CONFIG, namespace="ns", key="k")
    assert code == ResponseCode.QUERY_NOT_FOUND


async def test_name_servers_side_by_side_share_nothing(client: RemotingClient) -> None:
    settings = NameServerSettings(host="127.0.0.1", listen_port=0)
    async with NameServer(settings) as one, NameServer(settings) as two:
        assert one.port != two.port
        await client.invoke(one.addr, register_request(topics={"OnlyOne": 1}))
        await client.invoke(two.addr, register_request(topics={"OnlyTwo": 1}))
        assert (await client.invoke(one.addr, route_request("OnlyOne"))).code == 0
        assert (await client.invoke(two.addr, route_request("OnlyOne"))).code == 17
        await one.stop()
        assert (await client.invoke(two.addr, route_request("OnlyTwo"))).code == 0


async def test_kv_config_survives_a_restart(tmp_path: Path, client: RemotingClient) -> None:
    settings = NameServerSettings(
        host="127.0.0.1", listen_port=0, kv_config_path=tmp_path / "kvConfig.json"
    )
    async with NameServer(settings) as ns:
        put = request(RequestCode.PUT_KV_CONFIG, namespace="ns", key="k", value="v")
        assert (await client.invoke(ns.addr, put)).code == ResponseCode.SUCCESS
    async with NameServer(settings) as ns:
        get = await client.invoke(
            ns.addr, request(RequestCode.GET_KV_CONFIG, namespace="ns", key="k")
        )
        assert get.ext_fields == {"value": "v"}
