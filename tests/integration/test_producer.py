"""The rmqkit Producer against a real NameServer and broker(s) on loopback."""

from __future__ import annotations

import asyncio
import zlib
from pathlib import Path

import pytest

from rmqkit.client.message import Message, SendStatus
from rmqkit.client.producer import Producer
from rmqkit.client.uniq_id import new_uniq_id
from rmqkit.common.hashing import java_string_hash
from rmqkit.errors import MessageIllegalError, NoPermissionError
from rmqkit.protocol.message_id import decode_offset_msg_id
from rmqkit.protocol.record import decode_record, decode_records, format_host
from rmqkit.server.broker.broker import Broker
from rmqkit.testing import check_for

from .conftest import Cluster, broker_settings

pytestmark = pytest.mark.integration


def stored(c: Cluster, topic: str, queue_id: int) -> list:  # type: ignore[type-arg]
    g = c.broker.store.get_message(topic, queue_id, 0, 32)
    return decode_records(g.body()) if g.records else []


async def test_send_reports_ids_queue_and_offset(cluster: Cluster) -> None:
    await cluster.create_topic("P1", 2)
    async with Producer("PG", cluster.ns) as p:
        r = await p.send(
            Message("P1", b"hello", tags="t", keys=["k1", "k2"], properties={"u": "1"})
        )
    assert r.status is SendStatus.SEND_OK and len(r.msg_id) == 32
    host, phys = decode_offset_msg_id(r.offset_msg_id)
    assert format_host(host) == cluster.br
    m = decode_record(cluster.broker.store.look_message_by_offset(phys) or b"")
    assert (m.body, m.tags, m.keys, m.uniq_key, m.properties["u"]) == (
        b"hello", "t", ["k1", "k2"], r.msg_id, "1",
    )  # fmt: skip
    assert (r.queue.topic, r.queue.queue_id, r.queue_offset) == ("P1", m.queue_id, 0)


async def test_round_robin_over_queues_async_and_oneway(cluster: Cluster) -> None:
    await cluster.create_topic("P2", 4)
    async with Producer("PG", cluster.ns) as p:
        results = await asyncio.gather(*(p.send_async(Message("P2", b"x")) for _ in range(8)))
        assert sorted(r.queue.queue_id for r in results) == [0, 0, 1, 1, 2, 2, 3, 3]
        await p.send_oneway(Message("P2", b"oneway"))
    await check_for(
        lambda: sum(cluster.broker.store.get_max_offset("P2", q) for q in range(4)) == 9
    )


async def test_orderly_sends_of_one_key_share_a_queue_in_order(cluster: Cluster) -> None:
    await cluster.create_topic("P3", 4)
    async with Producer("PG", cluster.ns) as p:
        rs = [await p.send_orderly(Message("P3", str(i).encode()), "order-42") for i in range(5)]
    qid = abs(java_string_hash("order-42")) % 4
    assert {r.queue.queue_id for r in rs} == {qid}
    await check_for(lambda: len(stored(cluster, "P3", qid)) == 5)
    assert [m.body for m in stored(cluster, "P3", qid)] == [b"0", b"1", b"2", b"3", b"4"]


async def test_batch_and_compression(cluster: Cluster) -> None:
    await cluster.create_topic("P4", 1)
    big = b"z" * 10_000
    async with Producer("PG", cluster.ns, compress_msg_body_over_bytes=4096) as p:
        r = await p.send_batch([Message("P4", f"b{i}".encode(), keys=[f"k{i}"]) for i in range(3)])
        assert len(r.offset_msg_id.split(",")) == 3 and len(r.msg_id.split(",")) == 3
        await p.send(Message("P4", big))
    await check_for(lambda: len(stored(cluster, "P4", 0)) == 4)
    msgs = stored(cluster, "P4", 0)
    assert [m.body for m in msgs[:3]] == [b"b0", b"b1", b"b2"]
    assert msgs[3].body == big  # inflated on decode
    raw = cluster.broker.store.get_message("P4", 0, 3, 1).records[0]
    assert zlib.decompress(decode_record(raw, inflate=False).body) == big


async def test_first_send_creates_the_topic_through_tbw102(cluster: Cluster) -> None:
    async with Producer("PG", cluster.ns) as p:
        r = await p.send(Message("BrandNew", b"x"))
    assert r.status is SendStatus.SEND_OK
    cfg = cluster.broker.topics.get("BrandNew")
    assert cfg is not None and cfg.write_queue_nums == 4


async def test_client_side_refusals(cluster: Cluster) -> None:
    async with Producer("PG", cluster.ns, max_message_size_bytes=1000) as p:
        for bad in (Message("bad topic", b"x"), Message("T", b""), Message("T", b"x" * 1001)):
            with pytest.raises(MessageIllegalError):
                await p.send(bad)


async def test_broker_refusal_is_a_typed_error_naming_the_broker(cluster: Cluster) -> None:
    await cluster.create_topic("RO", 1)
    from rmqkit.common.topic import TopicConfig

    async with Producer("PG", cluster.ns, retry_times_when_send_failed=0) as p:
        await check_for(lambda: p.publish_info("RO", refresh=True))
        cluster.broker.topics.put(TopicConfig("RO", 1, 1, perm=4))  # read only, route cached
        with pytest.raises(NoPermissionError) as err:
            await p.send(Message("RO", b"x"))
    assert cluster.br in str(err.value) and "forbidden" in str(err.value)


async def test_namesrv_failover(cluster: Cluster) -> None:
    await cluster.create_topic("P5", 1)
    dead = "127.0.0.1:1"  # nothing listens on port 1
    async with Producer("PG", f"{dead};{cluster.ns}") as p:
        assert (await p.send(Message("P5", b"x"))).status is SendStatus.SEND_OK


async def test_retry_on_another_broker_when_one_dies(cluster: Cluster, tmp_path: Path) -> None:
    second = Broker(broker_settings(tmp_path / "b2", cluster.ns, broker_name="broker-b"))
    await second.start()
    try:
        for b in (cluster.broker, second):
            await cluster.call(
                17, addr=b.addr, topic="Both", defaultTopic="TBW102", readQueueNums=2,
                writeQueueNums=2, perm=6,
            )  # fmt: skip

        async def both_routed() -> bool:
            async with Producer("probe", cluster.ns) as probe:
                info = await probe.publish_info("Both", refresh=True)
                return len(info.master_addrs) == 2

        await check_for(both_routed, timeout=5)
        async with Producer("PG", cluster.ns, send_timeout_ms=1000) as p:
            await p.publish_info("Both")
            await second.stop()  # its queues stay in the cached route
            names = {(await p.send(Message("Both", b"x"))).queue.broker_name for _ in range(6)}
        assert names == {"broker-a"}
    finally:
        await second.stop()


def test_uniq_ids_are_unique_and_shaped() -> None:
    ids = {new_uniq_id() for _ in range(10_000)}
    assert len(ids) == 10_000
    assert all(len(i) == 32 and i == i.upper() for i in ids)
