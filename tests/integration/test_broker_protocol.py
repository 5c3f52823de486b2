"""The broker through the remoting protocol: send, pull, long polling, offsets, groups, admin."""

from __future__ import annotations

import asyncio
import time

import orjson
import pytest

from rmqkit.common.hashing import tags_code
from rmqkit.common.properties import encode_properties
from rmqkit.protocol.batch import BatchEntry, encode_batch
from rmqkit.protocol.codes import RequestCode as RC
from rmqkit.protocol.codes import ResponseCode
from rmqkit.protocol.command import RemotingCommand
from rmqkit.protocol.heartbeat import ConsumerEntry, HeartbeatData, SubscriptionEntry
from rmqkit.protocol.message_id import decode_offset_msg_id
from rmqkit.protocol.record import decode_records, format_host
from rmqkit.protocol.route import decode_topic_route
from rmqkit.remoting.client import RemotingClient
from rmqkit.remoting.connection import Connection
from rmqkit.testing import check_for

from .conftest import Cluster

pytestmark = pytest.mark.integration


async def send(
    c: Cluster, topic: str, body: bytes, queue_id: int = 0, **props: str
) -> RemotingCommand:
    return await c.call(
        RC.SEND_MESSAGE_V2, body, a="PG", b=topic, c="TBW102", d=4, e=queue_id, f=0,
        g=int(time.time() * 1000), h=0, i=encode_properties(props), j=0, k="false", m="false",
    )  # fmt: skip


async def pull(c: Cluster, topic: str, queue_id: int, offset: int, *, sub: str = "*",
               suspend_ms: int = 0, group: str = "CG") -> RemotingCommand:  # fmt: skip
    return await c.call(
        RC.PULL_MESSAGE, consumerGroup=group, topic=topic, queueId=queue_id, queueOffset=offset,
        maxMsgNums=32, sysFlag=6 if suspend_ms else 4, commitOffset=0,
        suspendTimeoutMillis=suspend_ms, subscription=sub, subVersion=0, expressionType="TAG",
    )  # fmt: skip


async def test_a_created_topic_is_routable_once_the_creation_is_answered(
    cluster: Cluster,
) -> None:
    """As with Java's broker, which registers with the NameServers before it answers: a script
    that creates a topic and then sends to it or asks for its status must not race."""
    cluster.broker.registration.register_soon = lambda: None  # type: ignore[method-assign]
    await cluster.create_topic("Orders", 4)  # the periodic round is 30 s away
    r = await cluster.call(RC.GET_ROUTEINFO_BY_TOPIC, addr=cluster.ns, topic="Orders")
    assert r.code == 0, r.remark
    route = decode_topic_route(r.body)
    assert route.broker_datas[0].broker_addrs[0] == cluster.br
    assert [(q.read_queue_nums, q.write_queue_nums) for q in route.queue_datas] == [(4, 4)]


async def test_send_then_pull_returns_the_stored_record(cluster: Cluster) -> None:
    await cluster.create_topic("T1", 2)
    r = await send(cluster, "T1", b"hello", 1, TAGS="a", KEYS="k1")
    assert r.code == ResponseCode.SUCCESS, r.remark
    assert r.ext_fields["queueId"] == "1" and r.ext_fields["queueOffset"] == "0"
    host, phys = decode_offset_msg_id(r.ext_fields["msgId"])
    assert format_host(host) == cluster.br
    await check_for(lambda: cluster.broker.store.get_max_offset("T1", 1) == 1)
    p = await pull(cluster, "T1", 1, 0)
    assert p.code == ResponseCode.SUCCESS
    assert {"nextBeginOffset", "minOffset", "maxOffset", "suggestWhichBrokerId"} <= set(
        p.ext_fields
    )
    (m,) = decode_records(p.body, check_crc=True)
    assert (m.body, m.tags, m.commit_log_offset, m.properties["CLUSTER"]) == (
        b"hello", "a", phys, "DefaultCluster",
    )  # fmt: skip
    assert p.ext_fields["nextBeginOffset"] == "1"
    empty = await pull(cluster, "T1", 1, 1)
    assert empty.code == ResponseCode.PULL_NOT_FOUND and empty.ext_fields["nextBeginOffset"] == "1"
    moved = await pull(cluster, "T1", 1, 50)
    assert moved.code == ResponseCode.PULL_OFFSET_MOVED


async def test_tag_filter_on_pull(cluster: Cluster) -> None:
    await cluster.create_topic("T2", 1)
    for t in ["a", "b", "a", "c"]:
        assert (await send(cluster, "T2", t.encode(), TAGS=t)).code == 0
    await check_for(lambda: cluster.broker.store.get_max_offset("T2", 0) == 4)
    p = await pull(cluster, "T2", 0, 0, sub="a || c")
    assert [m.body for m in decode_records(p.body)] == [b"a", b"a", b"c"]


async def test_long_poll_is_released_by_an_arriving_message(cluster: Cluster) -> None:
    await cluster.create_topic("T3", 1)
    started = time.monotonic()
    held = asyncio.ensure_future(pull(cluster, "T3", 0, 0, suspend_ms=10_000))
    await check_for(lambda: cluster.broker.pull_holds.count == 1)
    # The same connection still answers other requests while the pull is held.
    other = await cluster.call(RC.GET_MAX_OFFSET, topic="T3", queueId=0)
    assert other.code == 0 and not held.done()
    await send(cluster, "T3", b"wake")
    p = await held
    assert p.code == 0 and decode_records(p.body)[0].body == b"wake"
    assert time.monotonic() - started < 5


async def test_long_poll_times_out_with_not_found(cluster: Cluster) -> None:
    await cluster.create_topic("T4", 1)
    p = await pull(cluster, "T4", 0, 0, suspend_ms=200)
    assert p.code == ResponseCode.PULL_NOT_FOUND and p.ext_fields["nextBeginOffset"] == "0"


async def test_heartbeat_groups_retry_topic_and_offsets(cluster: Cluster) -> None:
    await cluster.create_topic("T5", 2)
    hb = HeartbeatData(
        "10.0.0.1@1",
        ["PG"],
        [ConsumerEntry("CG5", subscriptions=[SubscriptionEntry("T5", "*")])],
    )
    r = await cluster.call(RC.HEART_BEAT, hb.encode())
    assert r.code == 0
    assert cluster.broker.topics.get("%RETRY%CG5") is not None
    ids = await cluster.call(RC.GET_CONSUMER_LIST_BY_GROUP, consumerGroup="CG5")
    assert orjson.loads(ids.body) == {"consumerIdList": ["10.0.0.1@1"]}
    first = await cluster.call(RC.QUERY_CONSUMER_OFFSET, consumerGroup="CG5", topic="T5", queueId=0)
    assert (first.code, first.ext_fields["offset"]) == (
        0,
        "0",
    )  # the Java broker's first-offset rule
    await cluster.call(RC.UPDATE_CONSUMER_OFFSET, consumerGroup="CG5", topic="T5", queueId=0,
                       commitOffset=7)  # fmt: skip
    q = await cluster.call(RC.QUERY_CONSUMER_OFFSET, consumerGroup="CG5", topic="T5", queueId=0)
    assert q.ext_fields["offset"] == "7"
    none = await cluster.call(RC.GET_CONSUMER_LIST_BY_GROUP, consumerGroup="nobody")
    assert none.code == ResponseCode.SYSTEM_ERROR


async def test_c_plus_plus_heartbeat_shape_with_integer_enums(cluster: Cluster) -> None:
    body = orjson.dumps({
        "clientID": "1234-127.0.0.1@DEFAULT",
        "consumerDataSet": [{"groupName": "CGcpp", "consumeType": 1, "messageModel": 1,
                             "consumeFromWhere": 0, "subscriptionDataSet": [
                                 {"topic": "T6", "subString": "*", "subVersion": "1700000000"}]}],
        "producerDataSet": [],
    })  # fmt: skip
    assert (await cluster.call(RC.HEART_BEAT, body)).code == 0
    info = cluster.broker.clients.consumers["CGcpp"]
    assert info.message_model == "CLUSTERING" and info.client_ids() == ["1234-127.0.0.1@DEFAULT"]


async def test_group_members_are_told_when_the_group_changes(cluster: Cluster) -> None:
    notices: list[RemotingCommand] = []

    def on_request(conn: Connection, cmd: RemotingCommand) -> None:
        notices.append(cmd)

    first = RemotingClient(handler=on_request)
    second = RemotingClient()
    hb = lambda cid: HeartbeatData(cid, [], [ConsumerEntry("CG7")]).encode()  # noqa: E731
    await first.invoke(cluster.br, RemotingCommand(RC.HEART_BEAT, body=hb("c1")), 5)
    await second.invoke(cluster.br, RemotingCommand(RC.HEART_BEAT, body=hb("c2")), 5)
    await check_for(lambda: len(notices) >= 2)  # c1's own join, then c2's
    assert {n.code for n in notices} == {RC.NOTIFY_CONSUMER_IDS_CHANGED}
    assert notices[-1].ext_fields == {"consumerGroup": "CG7"}
    before = len(notices)
    await second.close()  # leaving is announced too
    await check_for(lambda: len(notices) > before)
    assert cluster.broker.clients.consumer_ids("CG7") == ["c1"]
    await first.close()


async def test_a_group_can_turn_its_notices_off(cluster: Cluster) -> None:
    body = orjson.dumps({"groupName": "Quiet", "notifyConsumerIdsChangedEnable": "false"})
    assert (await cluster.call(RC.UPDATE_AND_CREATE_SUBSCRIPTIONGROUP, body)).code == 0
    notices: list[RemotingCommand] = []
    member = RemotingClient(handler=lambda conn, cmd: notices.append(cmd))
    other = RemotingClient()
    hb = lambda cid, g: HeartbeatData(cid, [], [ConsumerEntry(g)]).encode()  # noqa: E731
    await member.invoke(cluster.br, RemotingCommand(RC.HEART_BEAT, body=hb("m", "Quiet")), 5)
    await other.invoke(cluster.br, RemotingCommand(RC.HEART_BEAT, body=hb("o", "Quiet")), 5)
    # A group that does notify, on the same connection: its notice comes after any of Quiet's.
    await member.invoke(cluster.br, RemotingCommand(RC.HEART_BEAT, body=hb("m", "Loud")), 5)
    await check_for(lambda: notices)
    assert [n.ext_fields["consumerGroup"] for n in notices] == ["Loud"]
    assert cluster.broker.clients.consumer_ids("Quiet") == ["m", "o"]
    await other.close()
    await member.close()


async def test_batch_view_by_id_and_query_by_key(cluster: Cluster) -> None:
    await cluster.create_topic("T8", 1)
    body = encode_batch(
        [BatchEntry(f"m{i}".encode(), encode_properties({"KEYS": f"key{i}"})) for i in range(3)]
    )
    r = await cluster.call(
        RC.SEND_BATCH_MESSAGE, body, a="PG", b="T8", c="TBW102", d=4, e=0, f=0, g=0, h=0, i="",
        m="true",
    )  # fmt: skip
    assert r.code == 0 and len(r.ext_fields["msgId"].split(",")) == 3
    _, phys = decode_offset_msg_id(r.ext_fields["msgId"].split(",")[1])
    v = await cluster.call(RC.VIEW_MESSAGE_BY_ID, offset=phys)
    assert decode_records(v.body)[0].body == b"m1"
    await check_for(lambda: cluster.broker.store.get_max_offset("T8", 0) == 3)
    q = await cluster.call(RC.QUERY_MESSAGE, topic="T8", key="key2", maxNum=5, beginTimestamp=0,
                           endTimestamp=2**62)  # fmt: skip
    assert [m.body for m in decode_records(q.body)] == [b"m2"]
    miss = await cluster.call(RC.QUERY_MESSAGE, topic="T8", key="nope", maxNum=5,
                              beginTimestamp=0, endTimestamp=2**62)  # fmt: skip
    assert miss.code == ResponseCode.QUERY_NOT_FOUND


async def test_offsets_and_store_times(cluster: Cluster) -> None:
    await cluster.create_topic("T9", 1)
    before = int(time.time() * 1000) - 1
    for i in range(3):
        await send(cluster, "T9", bytes([i]))
    await check_for(lambda: cluster.broker.store.get_max_offset("T9", 0) == 3)
    mx = await cluster.call(RC.GET_MAX_OFFSET, topic="T9", queueId=0)
    mn = await cluster.call(RC.GET_MIN_OFFSET, topic="T9", queueId=0)
    ts = await cluster.call(RC.SEARCH_OFFSET_BY_TIMESTAMP, topic="T9", queueId=0, timestamp=before)
    early = await cluster.call(RC.GET_EARLIEST_MSG_STORETIME, topic="T9", queueId=0)
    assert (mx.ext_fields["offset"], mn.ext_fields["offset"], ts.ext_fields["offset"]) == (
        "3",
        "0",
        "0",
    )
    assert int(early.ext_fields["timestamp"]) >= before


async def test_auto_create_through_tbw102(cluster: Cluster) -> None:
    r = await send(cluster, "Fresh", b"x", 0)
    assert r.code == 0
    cfg = cluster.broker.topics.get("Fresh")
    assert cfg is not None and cfg.write_queue_nums == 4  # min(producer's 4, TBW102's 8)


async def test_tag_hash_is_javas(cluster: Cluster) -> None:
    await cluster.create_topic("T10", 1)
    await send(cluster, "T10", b"x", TAGS="TagA")
    await check_for(lambda: cluster.broker.store.get_max_offset("T10", 0) == 1)
    cq = cluster.broker.store.find_consume_queue("T10", 0)
    assert (
        cq is not None
        and cq.entry(0) is not None
        and cq.entry(0)[2] == tags_code("TagA") == 2598919
    )  # type: ignore[index]


async def test_restart_keeps_topics_offsets_and_messages(cluster: Cluster) -> None:
    await cluster.create_topic("T11", 1)
    await send(cluster, "T11", b"kept")
    await cluster.call(RC.UPDATE_CONSUMER_OFFSET, consumerGroup="G", topic="T11", queueId=0,
                       commitOffset=1)  # fmt: skip
    b = cluster.broker
    await b.stop()
    from rmqkit.server.broker.broker import Broker

    again = Broker(b.settings)
    await again.start()
    try:
        assert again.topics.get("T11") is not None
        assert again.offsets.query("G", "T11", 0) == 1
        assert again.store.get_max_offset("T11", 0) == 1
    finally:
        await again.stop()


async def test_sql92_pull_filter_needs_enable_property_filter(cluster: Cluster) -> None:
    await cluster.create_topic("SQL", 1)
    for i in range(6):
        assert (await send(cluster, "SQL", str(i).encode(), a=str(i), TAGS="t")).code == 0
    await check_for(lambda: cluster.broker.store.get_max_offset("SQL", 0) == 6)

    async def sql_pull(expr: str) -> RemotingCommand:
        return await cluster.call(
            RC.PULL_MESSAGE, consumerGroup="SG", topic="SQL", queueId=0, queueOffset=0,
            maxMsgNums=32, sysFlag=4, commitOffset=0, suspendTimeoutMillis=0, subscription=expr,
            subVersion=0, expressionType="SQL92",
        )  # fmt: skip

    off = await sql_pull("a > 3")
    assert off.code == ResponseCode.SYSTEM_ERROR and "enablePropertyFilter" in (off.remark or "")
    b = cluster.broker
    b.settings = b.settings.model_copy(update={"enable_property_filter": True})
    ok = await sql_pull("a > 3 AND TAGS = 't'")
    assert [m.body for m in decode_records(ok.body)] == [b"4", b"5"]
    assert ok.ext_fields["nextBeginOffset"] == "6"
    bad = await sql_pull("a > ")
    assert bad.code == ResponseCode.SUBSCRIPTION_PARSE_FAILED and "does not parse" in (
        bad.remark or ""
    )
