"""Arbitrary-time delays (TIMER_DELIVER_MS, TIMER_DELAY_SEC, TIMER_DELAY_MS) through the protocol.

A producer and a PushConsumer against a real broker. Times are checked from below only: a timer
message must never arrive before the time it asked for; how late it may be is not tested.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from rmqkit.client.message import Message
from rmqkit.client.producer import Producer
from rmqkit.client.push_consumer import ConsumeContext, ConsumeResult, PushConsumer
from rmqkit.errors import MessageIllegalError, SystemError_
from rmqkit.protocol.codes import RequestCode, ResponseCode
from rmqkit.protocol.record import StoredMessage, decode_records
from rmqkit.server.broker.broker import Broker
from rmqkit.server.namesrv.namesrv import NameServer, NameServerSettings
from rmqkit.server.store.timer import TIMER_TOPIC
from rmqkit.testing import check_for

from .conftest import Cluster, broker_settings, running_cluster

pytestmark = pytest.mark.integration
_names = itertools.count()


def now_ms() -> int:
    return int(time.time() * 1000)


def consumer(c: Cluster, group: str, topic: str, sink: list[StoredMessage]) -> PushConsumer:
    pc = PushConsumer(
        group, c.ns, instance_name=f"t{next(_names)}",
        consume_from_where="CONSUME_FROM_FIRST_OFFSET", rebalance_interval_ms=300,
    )  # fmt: skip
    pc.subscribe(topic)

    async def handle(msgs: list[StoredMessage], ctx: ConsumeContext) -> ConsumeResult:
        sink.extend(msgs)
        return ConsumeResult.SUCCESS

    pc.register(handle)
    return pc


def stored(c: Cluster, topic: str, queue_id: int = 0) -> list[StoredMessage]:
    g = c.broker.store.get_message(topic, queue_id, 0, 32)
    return decode_records(g.body()) if g.records else []


@pytest.fixture
async def fast(tmp_path: Path) -> AsyncIterator[Cluster]:
    """A broker with 100 ms timer slots and a one-hour longest delay."""
    async with running_cluster(
        tmp_path, store={"timer_precision_ms": 100, "timer_max_delay_sec": 3600}
    ) as c:
        yield c


async def test_each_way_of_asking_is_delivered_not_before_its_time(cluster: Cluster) -> None:
    # The default settings: 1 s slots.
    await cluster.create_topic("TM1", 2)
    got: list[StoredMessage] = []
    asked: dict[bytes, int] = {}
    async with Producer("PG", cluster.ns) as p:
        for body, props in [
            (b"ms", {"TIMER_DELAY_MS": "1500"}),
            (b"sec", {"TIMER_DELAY_SEC": "2"}),
            (b"at", {"TIMER_DELIVER_MS": str(now_ms() + 1800)}),
        ]:
            before = now_ms()
            r = await p.send(Message("TM1", body, tags="tagT", keys=["k-" + body.decode()],
                                     properties={"color": "blue", **props}))  # fmt: skip
            key, value = next(iter(props.items()))
            asked[body] = (
                int(value) if key == "TIMER_DELIVER_MS"
                else before + int(value) * (1000 if key == "TIMER_DELAY_SEC" else 1)
            )  # fmt: skip
            assert r.queue.topic == "TM1"
    assert cluster.broker.store.get_max_offset(TIMER_TOPIC, 0) == 3
    async with consumer(cluster, "GT1", "TM1", got):
        await check_for(lambda: len(got) == 3, timeout=10)
    for m in got:
        arrived = m.store_timestamp
        assert arrived >= asked[m.body], (m.body, arrived, asked[m.body])
        assert int(m.properties["TIMER_DEQUEUE_MS"]) >= asked[m.body]
        assert m.topic == "TM1" and m.tags == "tagT" and m.keys == ["k-" + m.body.decode()]
        assert m.properties["color"] == "blue"
        assert "REAL_TOPIC" not in m.properties and "REAL_QID" not in m.properties
        assert int(m.properties["TIMER_OUT_MS"]) % 1000 == 0
        assert int(m.properties["TIMER_ENQUEUE_MS"]) <= int(m.properties["TIMER_DEQUEUE_MS"])
    assert {m.body: m for m in got}[b"ms"].properties["TIMER_DELAY_MS"] == "1500"
    assert cluster.broker.timer.delivered == 3 and cluster.broker.timer.pending == 0


async def test_a_time_already_past_is_delivered_at_once(fast: Cluster) -> None:
    await fast.create_topic("TM2", 1)
    async with Producer("PG", fast.ns) as p:
        await p.send(Message("TM2", b"late", properties={"TIMER_DELIVER_MS": "1"}))
        await p.send(Message("TM2", b"zero", properties={"TIMER_DELAY_MS": "0"}))
    # Stored straight into the topic: nothing waits in the timer queue.
    assert [m.body for m in stored(fast, "TM2")] == [b"late", b"zero"]
    assert fast.broker.store.get_max_offset(TIMER_TOPIC, 0) == 0
    assert stored(fast, "TM2")[0].properties["TIMER_DELIVER_MS"] == "1"


async def test_a_delay_past_the_maximum_is_refused_with_a_clear_remark(fast: Cluster) -> None:
    await fast.create_topic("TM3", 1)
    async with Producer("PG", fast.ns, retry_times_when_send_failed=0) as p:
        with pytest.raises(MessageIllegalError, match=r"longest delay of 3600000 ms"):
            await p.send(Message("TM3", b"x", properties={"TIMER_DELAY_SEC": "3601"}))
        with pytest.raises(MessageIllegalError, match="TIMER_DELAY_MS='soon'"):
            await p.send(Message("TM3", b"x", properties={"TIMER_DELAY_MS": "soon"}))
        # Exactly the maximum is allowed.
        await p.send(Message("TM3", b"ok", properties={"TIMER_DELAY_SEC": "3599"}))
    assert fast.broker.store.get_max_offset(TIMER_TOPIC, 0) == 1


async def test_a_delay_level_wins_over_timer_properties(fast: Cluster) -> None:
    await fast.create_topic("TM4", 1)
    async with Producer("PG", fast.ns) as p:
        await p.send(Message("TM4", b"lvl", delay_level=1, properties={"TIMER_DELAY_MS": "50"}))
    assert fast.broker.store.get_max_offset(TIMER_TOPIC, 0) == 0
    assert fast.broker.store.get_max_offset("SCHEDULE_TOPIC_XXXX", 0) == 1
    await check_for(lambda: stored(fast, "TM4"), timeout=5)
    (m,) = stored(fast, "TM4")
    assert "TIMER_DELAY_MS" not in m.properties and "DELAY" not in m.properties


async def test_transactional_and_batched_timer_messages_are_refused(fast: Cluster) -> None:
    await fast.create_topic("TM5", 1)
    half = {"TRAN_MSG": "true", "PGROUP": "PG", "TIMER_DELAY_MS": "500"}
    async with Producer("PG", fast.ns, retry_times_when_send_failed=0) as p:
        with pytest.raises(MessageIllegalError, match="transactional message cannot ask"):
            await p.send(Message("TM5", b"tx", properties=half))
        with pytest.raises(MessageIllegalError, match="batch cannot hold timer messages"):
            await p.send_batch([
                Message("TM5", b"a"), Message("TM5", b"b", properties={"TIMER_DELAY_MS": "500"})
            ])  # fmt: skip
        # A time already past does not make a batch a timed one.
        await p.send_batch([Message("TM5", b"c", properties={"TIMER_DELIVER_MS": "5"})])
    assert [m.body for m in stored(fast, "TM5")] == [b"c"]


async def test_the_timer_topic_is_not_sendable(fast: Cluster) -> None:
    r = await fast.call(
        RequestCode.SEND_MESSAGE, body=b"x", producerGroup="PG", topic=TIMER_TOPIC,
        defaultTopic="TBW102", defaultTopicQueueNums=4, queueId=0, sysFlag=0,
        bornTimestamp=0, flag=0, properties="",
    )  # fmt: skip
    assert r.code == ResponseCode.NO_PERMISSION and TIMER_TOPIC in (r.remark or "")


async def test_timer_off_refuses_with_system_error(tmp_path: Path) -> None:
    async with NameServer(NameServerSettings(host="127.0.0.1", listen_port=0)) as ns:
        settings = broker_settings(
            tmp_path / "store", f"127.0.0.1:{ns.port}", store={"timer_wheel_enable": False}
        )
        async with Broker(settings) as broker:
            assert not broker.timer.running
            async with Producer("PG", f"127.0.0.1:{ns.port}", retry_times_when_send_failed=0) as p:
                with pytest.raises(SystemError_, match="timerWheelEnable=false"):
                    await p.send(Message("TM6", b"x", properties={"TIMER_DELAY_MS": "500"}))
                await p.send(Message("TM6", b"plain"))


async def test_many_timed_messages_arrive_in_time_order_of_their_slots(fast: Cluster) -> None:
    await fast.create_topic("TM7", 4)
    got: list[StoredMessage] = []
    asked: dict[bytes, int] = {}
    async with Producer("PG", fast.ns) as p:
        for i in range(60):
            delay = 200 + (i * 37) % 700
            asked[str(i).encode()] = now_ms() + delay
            await p.send(Message("TM7", str(i).encode(), properties={"TIMER_DELAY_MS": str(delay)}))
    async with consumer(fast, "GT7", "TM7", got):
        await check_for(lambda: len({m.body for m in got}) == 60, timeout=10)
    assert all(m.store_timestamp >= asked[m.body] for m in got)
    assert len(got) == 60  # no message twice
    assert fast.broker.stats.messages_put == 120  # each counted when sent and when delivered


async def test_pending_timers_survive_a_clean_restart(fast: Cluster) -> None:
    await fast.create_topic("TM8", 1)
    async with Producer("PG", fast.ns) as p:
        await p.send(Message("TM8", b"soon", properties={"TIMER_DELAY_MS": "100"}))
        await p.send(Message("TM8", b"later", properties={"TIMER_DELAY_MS": "1500"}))
    await check_for(lambda: [m.body for m in stored(fast, "TM8")] == [b"soon"], timeout=5)
    b = fast.broker
    await b.stop()
    assert b.timer.pending == 1
    again = Broker(b.settings)
    await again.start()
    try:
        assert again.timer.pending == 1  # "soon" was delivered before the checkpoint
        await check_for(lambda: again.store.get_max_offset("TM8", 0) == 2, timeout=5)
    finally:
        await again.stop()
    checkpoint = b.settings.store.store_path_root_dir / "config" / "timerCheckpoint.json"
    assert '"nextOffset": 2' in checkpoint.read_text()
