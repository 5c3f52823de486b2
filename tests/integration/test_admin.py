"""The AdminClient and the admin request codes against a NameServer and broker on loopback."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import orjson
import pytest

from rmqkit.client.admin import AdminClient
from rmqkit.client.message import Message, MessageQueue
from rmqkit.client.producer import Producer
from rmqkit.client.push_consumer import ConsumeContext, ConsumeResult
from rmqkit.errors import BrokerResponseError
from rmqkit.protocol.codes import RequestCode as RC
from rmqkit.protocol.codes import ResponseCode
from rmqkit.protocol.record import StoredMessage
from rmqkit.protocol.route import decode_kv_table
from rmqkit.testing import check_for

from .conftest import FAST_RETRIES, Cluster, consumer, running_cluster

pytestmark = pytest.mark.integration


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[Cluster]:
    async with running_cluster(tmp_path, store=FAST_RETRIES) as c:
        yield c


async def test_topics_stats_progress_and_connections(cluster: Cluster) -> None:
    async with AdminClient(cluster.ns) as admin:
        await admin.create_topic("A1", 2)
        await check_for(lambda: admin.topics(), timeout=5)
        assert "A1" in await admin.topics()
        async with Producer("PG", cluster.ns, instance_name="p1") as p:
            for i in range(10):
                await p.send(Message("A1", f"m{i}".encode(), keys=[f"k{i}"]))
        await check_for(
            lambda: sum(cluster.broker.store.get_max_offset("A1", q) for q in (0, 1)) == 10
        )
        stats = await admin.topic_stats("A1")
        assert sum(hi for _, hi in stats.values()) == 10 and len(stats) == 2
        got: list[StoredMessage] = []

        async def take_four(msgs: list[StoredMessage], ctx: ConsumeContext) -> ConsumeResult:
            got.extend(msgs)
            return ConsumeResult.SUCCESS

        async with consumer(cluster, "AG", "A1", take_four):
            await check_for(lambda: len(got) == 10, timeout=5)
            conns = await admin.consumer_connections("AG")
            assert conns["messageModel"] == "CLUSTERING" and len(conns["connectionSet"]) == 1
        progress = [p for p in await admin.consumer_progress("AG", "A1")]
        assert sum(p.broker_offset for p in progress) == 10 and sum(p.lag for p in progress) == 0
        with pytest.raises(BrokerResponseError):
            await admin.consumer_connections("AG")  # it left
        found = await admin.query_by_key("A1", "k7")
        assert [m.body for m in found] == [b"m7"]
        viewed = await admin.view_message(found[0].offset_msg_id)
        assert viewed.body == b"m7"


async def test_reset_offset_by_time_rewinds_a_live_consumer(cluster: Cluster) -> None:
    async with AdminClient(cluster.ns) as admin:
        await admin.create_topic("A2", 1)
        async with Producer("PG", cluster.ns, instance_name="p2") as p:
            for i in range(5):
                await p.send(Message("A2", f"r{i}".encode()))
        got: list[bytes] = []

        async def collect(msgs: list[StoredMessage], ctx: ConsumeContext) -> ConsumeResult:
            got.extend(m.body for m in msgs)
            return ConsumeResult.SUCCESS

        async with consumer(cluster, "RG", "A2", collect):
            await check_for(lambda: len(got) == 5, timeout=5)
            table = await admin.reset_offset_by_time("RG", "A2", 0)
            assert table == {MessageQueue("A2", "broker-a", 0): 0}
            await check_for(lambda: len(got) == 10, timeout=5)  # everything again
        assert got[5:] == got[:5]


async def test_resend_a_dead_letter_to_its_group(cluster: Cluster) -> None:
    async with AdminClient(cluster.ns) as admin:
        await admin.create_topic("A3", 1)
        attempts: list[int] = []
        healed = False

        async def poison(msgs: list[StoredMessage], ctx: ConsumeContext) -> ConsumeResult:
            attempts.append(msgs[0].reconsume_times)
            return ConsumeResult.SUCCESS if healed else ConsumeResult.RECONSUME_LATER

        async with consumer(cluster, "DG", "A3", poison):
            async with Producer("PG", cluster.ns, instance_name="p3") as p:
                await p.send(Message("A3", b"bad", keys=["dead-1"]))
            await check_for(
                lambda: cluster.broker.store.get_max_offset("%DLQ%DG", 0) == 1, timeout=5
            )

            async def dlq_routed() -> bool:
                return await admin.instance.route("%DLQ%DG", refresh=True) is not None

            await check_for(dlq_routed, timeout=5)
            (dead,) = await admin.query_by_key("%DLQ%DG", "dead-1")
            healed = True
            await admin.resend_dead_letter(dead, "DG")
            await check_for(lambda: len(attempts) == 3, timeout=5)  # 2 failed tries + the resend


async def test_runtime_groups_files_and_consumers_of_a_topic(cluster: Cluster) -> None:
    rt = await cluster.call(RC.GET_BROKER_RUNTIME_INFO)
    table = decode_kv_table(rt.body)
    assert table["brokerName"] == "broker-a" and int(table["commitLogMaxOffset"]) >= 0
    assert table["timerCongestNum"] == "0" and "timerDequeueTps" in table
    group = {"groupName": "SG1", "retryMaxTimes": 3, "consumeEnable": True}
    assert (
        await cluster.call(RC.UPDATE_AND_CREATE_SUBSCRIPTIONGROUP, orjson.dumps(group))
    ).code == 0
    all_groups = orjson.loads((await cluster.call(RC.GET_ALL_SUBSCRIPTIONGROUP_CONFIG)).body)
    assert all_groups["subscriptionGroupTable"]["SG1"]["retryMaxTimes"] == 3
    assert (await cluster.call(RC.DELETE_SUBSCRIPTIONGROUP, groupName="SG1")).code == 0
    assert "SG1" not in cluster.broker.groups.groups
    assert (await cluster.call(RC.TRIGGER_DELETE_FILES)).code == 0
    await cluster.call(RC.UPDATE_CONSUMER_OFFSET, consumerGroup="W", topic="X", queueId=0,
                       commitOffset=1)  # fmt: skip
    who = orjson.loads((await cluster.call(RC.QUERY_TOPIC_CONSUME_BY_WHO, topic="X")).body)
    assert who == {"groupList": ["W"]}
    missing = await cluster.call(RC.GET_TOPIC_STATS_INFO, topic="nope")
    assert missing.code == ResponseCode.TOPIC_NOT_EXIST
    bad = await cluster.call(RC.UPDATE_AND_CREATE_SUBSCRIPTIONGROUP, b"{bad")
    assert bad.code == ResponseCode.SYSTEM_ERROR
    assert time.time() > 0
