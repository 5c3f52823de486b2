"""MemoryBroker: ORDERLY consumption (in order per queue, suspend and retry in place, then the
DLQ) and delayed delivery (delay levels and RocketMQ 5 timer properties) on the fake clock."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import AsyncIterator

import pytest

from rmqkit.client.message import Message
from rmqkit.common.names import SCHEDULE_TOPIC
from rmqkit.common.properties import Prop
from rmqkit.errors import MessageIllegalError
from rmqkit.protocol.record import StoredMessage
from rmqkit.testing.memory import FakeClock, MemoryBroker, MemoryProducer

from .memory_helpers import Sink, start_consumer

T0 = 1_700_000_000.0


@pytest.fixture
async def broker() -> AsyncIterator[MemoryBroker]:
    b = MemoryBroker(FakeClock(T0))
    yield b
    await b.close()


@pytest.fixture
async def producer(broker: MemoryBroker) -> MemoryProducer:
    p = MemoryProducer(broker, "pg")
    await p.start()
    return p


def by_key(msgs: list[StoredMessage]) -> dict[str, list[int]]:
    out: dict[str, list[int]] = defaultdict(list)
    for m in msgs:
        key, _, seq = m.body.decode().partition(":")
        out[key].append(int(seq))
    return dict(out)


# -- ORDERLY ------------------------------------------------------------------------------------


async def test_orderly_hands_each_queue_one_message_at_a_time_in_order(
    broker: MemoryBroker, producer: MemoryProducer
) -> None:
    active: dict[int, int] = defaultdict(int)
    overlap: list[int] = []
    sink = Sink()

    async def handler(batch: list[StoredMessage], ctx: object) -> object:
        qid = batch[0].queue_id
        active[qid] += 1
        if active[qid] > 1:
            overlap.append(qid)
        try:
            return await sink(batch, ctx)  # type: ignore[arg-type]
        finally:
            active[qid] -= 1

    await start_consumer(broker, "g", "t", handler, consume_mode="ORDERLY", consume_concurrency=8)
    keys = [f"order-{i}" for i in range(6)]
    for seq in range(5):
        for key in keys:
            await producer.send_orderly(Message("t", f"{key}:{seq}".encode()), key)
    await broker.drain()
    assert by_key(sink.seen) == {key: [0, 1, 2, 3, 4] for key in keys}
    assert overlap == [] and sink.max_active > 1  # queues run side by side, each one in order


async def test_an_orderly_failure_suspends_the_queue_and_retries_in_place(
    broker: MemoryBroker, producer: MemoryProducer
) -> None:
    sink = Sink(fail=lambda m: 0 if m.body == b"k:1" and m.reconsume_times < 2 else None)
    await start_consumer(broker, "g", "t", sink, consume_mode="ORDERLY",
                         suspend_current_queue_time_ms=500)  # fmt: skip
    for seq in range(3):
        await producer.send_orderly(Message("t", b"k:%d" % seq), "k")
    await broker.drain()
    assert sink.bodies == [b"k:0", b"k:1"]  # k:2 waits behind the failed k:1
    await broker.advance(0.4)
    assert sink.bodies == [b"k:0", b"k:1"]
    await broker.advance(0.1)
    assert sink.bodies == [b"k:0", b"k:1", b"k:1"]
    await broker.advance(0.5)
    assert sink.bodies == [b"k:0", b"k:1", b"k:1", b"k:1", b"k:2"]
    assert [n for body, n in sink.attempts if body == b"k:1"] == [0, 1, 2]
    assert broker.messages("%RETRY%g") == [] and broker.dlq("g") == []  # retried in place
    assert broker.lag("g", "t") == 0


async def test_orderly_messages_out_of_attempts_go_to_the_dlq_and_the_queue_moves_on(
    broker: MemoryBroker, producer: MemoryProducer
) -> None:
    sink = Sink(fail=lambda m: 0 if m.body == b"k:0" else None)
    await start_consumer(broker, "g", "t", sink, consume_mode="ORDERLY", max_reconsume_times=1,
                         suspend_current_queue_time_ms=100)  # fmt: skip
    for seq in range(2):
        await producer.send_orderly(Message("t", b"k:%d" % seq), "k")
    await broker.advance(1)
    assert sink.bodies == [b"k:0", b"k:0", b"k:1"]
    [dead] = broker.dlq("g")
    assert dead.body == b"k:0" and dead.properties[Prop.DLQ_ORIGIN_TOPIC] == "t"


async def test_an_orderly_give_up_dead_letters_at_once(
    broker: MemoryBroker, producer: MemoryProducer
) -> None:
    sink = Sink(fail=lambda m: -1 if m.body == b"k:0" else None)
    await start_consumer(broker, "g", "t", sink, consume_mode="ORDERLY")
    for seq in range(2):
        await producer.send_orderly(Message("t", b"k:%d" % seq), "k")
    await broker.drain()
    assert sink.bodies == [b"k:0", b"k:1"]
    assert [m.body for m in broker.dlq("g")] == [b"k:0"]


# -- delays -------------------------------------------------------------------------------------


async def test_a_delay_level_hides_a_message_until_its_delay_has_passed(
    broker: MemoryBroker, producer: MemoryProducer
) -> None:
    sink = Sink()
    await start_consumer(broker, "g", "t", sink)
    sent = await producer.send(Message("t", b"later", tags="x", delay_level=3))  # 10 s
    await broker.drain()
    assert sink.seen == [] and broker.messages("t") == []
    [parked] = broker.delayed("t")
    assert parked.topic == SCHEDULE_TOPIC and parked.queue_id == 2
    assert parked.properties[Prop.REAL_TOPIC] == "t"
    await broker.advance(9.999)
    assert sink.seen == []
    await broker.advance(0.001)
    [m] = sink.seen
    assert (m.topic, m.tags, m.body, m.msg_id) == ("t", "x", b"later", sent.msg_id)
    assert Prop.DELAY_TIME_LEVEL not in m.properties and Prop.REAL_TOPIC not in m.properties
    assert m.store_timestamp == int(T0 * 1000) + 10_000
    assert broker.delayed() == []


async def test_levels_past_the_last_use_the_last(
    broker: MemoryBroker, producer: MemoryProducer
) -> None:
    await producer.send(Message("t", b"x", delay_level=40))
    await broker.advance(7199)
    assert broker.messages("t") == []
    await broker.advance(1)
    assert len(broker.messages("t")) == 1


async def test_timer_properties_deliver_at_a_time(
    broker: MemoryBroker, producer: MemoryProducer
) -> None:
    sink = Sink()
    await start_consumer(broker, "g", "t", sink)
    now_ms = broker.clock.now_ms()
    await producer.send(Message("t", b"in-1.5s", properties={Prop.TIMER_DELAY_MS: "1500"}))
    await producer.send(
        Message("t", b"at+3s", properties={Prop.TIMER_DELIVER_MS: str(now_ms + 3000)})
    )
    await producer.send(Message("t", b"in-2s", properties={Prop.TIMER_DELAY_SEC: "2"}))
    await producer.send(Message("t", b"past", properties={Prop.TIMER_DELIVER_MS: str(now_ms - 1)}))
    await broker.drain()
    assert sink.bodies == [b"past"]
    await broker.advance(1.5)
    assert sink.bodies == [b"past", b"in-1.5s"]
    await broker.advance(1.5)
    assert sink.bodies == [b"past", b"in-1.5s", b"in-2s", b"at+3s"]
    assert not any(k.startswith("TIMER_") for m in sink.seen for k in m.properties)


async def test_bad_delays_are_refused(broker: MemoryBroker, producer: MemoryProducer) -> None:
    with pytest.raises(MessageIllegalError, match="3 days"):
        await producer.send(Message("t", b"x", properties={Prop.TIMER_DELAY_SEC: str(4 * 86400)}))
    with pytest.raises(MessageIllegalError, match="not a number"):
        await producer.send(Message("t", b"x", properties={Prop.TIMER_DELAY_MS: "soon"}))
    with pytest.raises(MessageIllegalError, match="delay level"):
        await producer.send(Message("t", b"x", properties={Prop.DELAY_TIME_LEVEL: "two"}))
    assert broker.messages("t") == [] and broker.delayed() == []


async def test_a_clock_moved_directly_is_delivered_by_drain(
    broker: MemoryBroker, producer: MemoryProducer
) -> None:
    await producer.send(Message("t", b"x", delay_level=1))
    broker.clock.advance(1)
    await broker.drain()
    assert len(broker.messages("t")) == 1
