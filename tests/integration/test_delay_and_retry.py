"""Delayed messages and consumer retries through the protocol, with shortened delay levels."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from rmqkit.client.message import Message
from rmqkit.client.producer import Producer
from rmqkit.client.push_consumer import ConsumeContext, ConsumeResult, PushConsumer
from rmqkit.protocol.codes import RequestCode as RC
from rmqkit.protocol.codes import ResponseCode
from rmqkit.protocol.record import StoredMessage, decode_records
from rmqkit.server.broker.broker import Broker
from rmqkit.testing import check_for

from .conftest import Cluster, running_cluster

pytestmark = pytest.mark.integration

LEVELS = "300ms 600ms 100ms 100ms 100ms 100ms 1s"


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[Cluster]:
    async with running_cluster(tmp_path, store={"message_delay_level": LEVELS}) as c:
        yield c


def arrived(c: Cluster, topic: str, queue_id: int = 0) -> list[StoredMessage]:
    g = c.broker.store.get_message(topic, queue_id, 0, 32)
    return decode_records(g.body()) if g.records else []


async def test_a_delayed_message_arrives_after_its_level(cluster: Cluster) -> None:
    await cluster.create_topic("D1", 1)
    async with Producer("PG", cluster.ns) as p:
        sent = time.monotonic()
        await p.send(Message("D1", b"later", tags="t", delay_level=1))
        assert arrived(cluster, "D1") == []  # waiting in SCHEDULE_TOPIC_XXXX queue 0
        await check_for(lambda: arrived(cluster, "D1"), timeout=5)
    waited = time.monotonic() - sent
    (m,) = arrived(cluster, "D1")
    assert waited >= 0.3 and m.body == b"later" and m.tags == "t"
    assert "DELAY" not in m.properties and "REAL_TOPIC" not in m.properties


async def test_one_level_keeps_its_order_and_high_levels_are_clamped(cluster: Cluster) -> None:
    await cluster.create_topic("D2", 1)
    async with Producer("PG", cluster.ns) as p:
        for i in range(20):
            await p.send_orderly(Message("D2", str(i).encode(), delay_level=2), "k")
        await p.send_orderly(Message("D2", b"clamped", delay_level=99), "k")
    await check_for(lambda: len(arrived(cluster, "D2")) == 21, timeout=5)
    bodies = [m.body for m in arrived(cluster, "D2")]
    assert bodies[:20] == [str(i).encode() for i in range(20)] and bodies[20] == b"clamped"


async def test_bad_delay_property_is_refused(cluster: Cluster) -> None:
    await cluster.create_topic("D3", 1)
    async with Producer("PG", cluster.ns, retry_times_when_send_failed=0) as p:
        from rmqkit.errors import MessageIllegalError

        with pytest.raises(MessageIllegalError, match="DELAY"):
            await p.send(Message("D3", b"x", properties={"DELAY": "soon"}))
        with pytest.raises(MessageIllegalError, match="TIMER_DELIVER_MS"):
            await p.send(Message("D3", b"x", properties={"TIMER_DELIVER_MS": "soon"}))


async def test_pending_delays_survive_a_restart(cluster: Cluster) -> None:
    await cluster.create_topic("D4", 1)
    async with Producer("PG", cluster.ns) as p:
        await p.send(Message("D4", b"survivor", delay_level=7))  # 1 s
    b = cluster.broker
    await b.stop()
    again = Broker(b.settings)
    await again.start()
    try:
        await check_for(lambda: again.store.get_max_offset("D4", 0) == 1, timeout=5)
        assert again.schedule.offsets == {7: 1}
    finally:
        await again.stop()
    assert "7" in (b.settings.store.store_path_root_dir / "config" / "delayOffset.json").read_text()


async def test_delivery_progress_is_written_on_its_interval_and_at_stop(tmp_path: Path) -> None:
    """Not at every pass: under load that was an fsync'd file write on the event loop for each
    run of deliveries. A crash repeats what was delivered since the last write."""
    async with running_cluster(
        tmp_path, store={"message_delay_level": LEVELS}, flush_delay_offset_interval_ms=600_000
    ) as c:
        await c.create_topic("D5", 1)
        path = c.broker.settings.store.store_path_root_dir / "config" / "delayOffset.json"
        async with Producer("PG", c.ns) as p:
            # The first pass that delivers writes the file (none was written yet) ...
            await p.send(Message("D5", b"0", delay_level=3))  # 100 ms
            await check_for(lambda: path.exists() and '"3": 1' in path.read_text(), timeout=5)
            for i in range(1, 5):
                await p.send(Message("D5", str(i).encode(), delay_level=3))
        await check_for(lambda: len(arrived(c, "D5")) == 5, timeout=5)
        await check_for(lambda: c.broker.schedule.offsets.get(3) == 5, timeout=5)
        assert '"3": 1' in path.read_text()  # ... and none since
        await c.broker.stop()
        assert '"3": 5' in path.read_text()


async def test_failing_consumer_retries_with_back_off_then_dead_letters(cluster: Cluster) -> None:
    await cluster.create_topic("R1", 1)
    seen: list[tuple[bytes, int, str]] = []
    pc = PushConsumer(
        "GR", cluster.ns, instance_name="retry", max_reconsume_times=2,
        consume_from_where="CONSUME_FROM_FIRST_OFFSET", rebalance_interval_ms=300,
    )  # fmt: skip
    pc.subscribe("R1")

    async def always_fails(msgs: list[StoredMessage], ctx: ConsumeContext) -> ConsumeResult:
        seen.extend((m.body, m.reconsume_times, m.topic) for m in msgs)
        return ConsumeResult.RECONSUME_LATER

    pc.register(always_fails)
    async with Producer("PG", cluster.ns) as p:
        sent = await p.send(Message("R1", b"poison", keys=["order-9"]))
    async with pc:
        await check_for(lambda: len(seen) == 3, timeout=10)
        await check_for(lambda: cluster.broker.store.get_max_offset("%DLQ%GR", 0) == 1, timeout=5)
    assert [(r, t) for _, r, t in seen] == [(0, "R1"), (1, "R1"), (2, "R1")]  # topic restored
    (dead,) = arrived(cluster, "%DLQ%GR")
    assert dead.body == b"poison" and dead.reconsume_times == 3
    assert (
        dead.properties["RETRY_TOPIC"] == "R1"
        and dead.properties["ORIGIN_MESSAGE_ID"] == sent.msg_id
    )
    pull = await cluster.call(
        RC.PULL_MESSAGE, consumerGroup="GR", topic="%DLQ%GR", queueId=0, queueOffset=0,
        maxMsgNums=32, sysFlag=4, commitOffset=0, suspendTimeoutMillis=0, subscription="*",
        subVersion=0,
    )  # fmt: skip
    assert pull.code == ResponseCode.NO_PERMISSION  # dead letters are not for consumers
    q = await cluster.call(RC.QUERY_MESSAGE, topic="%DLQ%GR", key="order-9", maxNum=5,
                           beginTimestamp=0, endTimestamp=2**62)  # fmt: skip
    assert decode_records(q.body)[0].body == b"poison"  # but they can be found


async def test_send_back_of_an_unknown_offset(cluster: Cluster) -> None:
    r = await cluster.call(RC.CONSUMER_SEND_MSG_BACK, offset=10**12, group="G", delayLevel=0)
    assert r.code == ResponseCode.SYSTEM_ERROR and "offset" in (r.remark or "")
