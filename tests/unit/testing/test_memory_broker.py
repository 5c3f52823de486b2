"""MemoryBroker delivery: storage as the real client encodes it, tag and SQL92 filters,
CLUSTERING and BROADCASTING, retries through `%RETRY%<group>` on the fake clock, the dead-letter
queue, committed offsets and where a consumer starts."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from rmqkit.client.message import Message
from rmqkit.client.push_consumer import ConsumeContext, ConsumeResult
from rmqkit.common.properties import Prop
from rmqkit.errors import ConfigurationError, MessageIllegalError, SubscriptionParseFailedError
from rmqkit.protocol.record import StoredMessage
from rmqkit.testing.memory import FakeClock, MemoryBroker, MemoryConsumer, MemoryProducer
from rmqkit.testing.polling import check_for

from .memory_helpers import Sink, send_all, start_consumer

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


# -- storing ------------------------------------------------------------------------------------


async def test_a_sent_message_is_stored_as_the_real_client_encodes_it(
    broker: MemoryBroker, producer: MemoryProducer
) -> None:
    msg = Message("orders", b"{}", tags="paid", keys=["o-1", "c-9"], properties={"region": "eu"})
    sent = await producer.send(msg)
    [m] = broker.messages("orders")
    assert m.msg_id == sent.msg_id == m.properties[Prop.UNIQ_CLIENT_MESSAGE_ID_KEYIDX]
    assert m.offset_msg_id == sent.offset_msg_id
    assert (m.tags, m.keys, m.properties["region"]) == ("paid", ["o-1", "c-9"], "eu")
    assert m.properties[Prop.CLUSTER] == "DefaultCluster"
    assert m.born_timestamp == m.store_timestamp == int(T0 * 1000)
    assert (m.queue_id, m.queue_offset) == (sent.queue.queue_id, sent.queue_offset)


async def test_sends_go_round_robin_and_orderly_sends_by_java_hash(
    broker: MemoryBroker, producer: MemoryProducer
) -> None:
    queues = [(await producer.send(Message("t", b"x"))).queue.queue_id for _ in range(6)]
    assert queues == [0, 1, 2, 3, 0, 1]
    # Java: "order-17".hashCode() == 1234255109 -> queue 1 of 4 (and queue 1 every time)
    orderly = {(await producer.send_orderly(Message("t", b"x"), "order-17")).queue.queue_id
               for _ in range(3)}  # fmt: skip
    assert orderly == {1234255109 % 4}


async def test_a_producer_checks_messages_like_the_real_one(broker: MemoryBroker) -> None:
    p = MemoryProducer(broker, "pg", max_message_size_bytes=10)
    with pytest.raises(ConfigurationError, match="not started"):
        await p.send(Message("t", b"x"))
    await p.start()
    with pytest.raises(MessageIllegalError, match="empty"):
        await p.send(Message("t", b""))
    with pytest.raises(MessageIllegalError, match="illegal characters"):
        await p.send(Message("bad topic", b"x"))
    with pytest.raises(MessageIllegalError, match="max_message_size_bytes"):
        await p.send(Message("t", b"x" * 11))
    assert broker.messages("t") == []


async def test_a_batch_lands_on_one_queue_all_or_nothing(
    broker: MemoryBroker, producer: MemoryProducer
) -> None:
    sent = await producer.send_batch([Message("t", b"%d" % i, tags="b") for i in range(3)])
    stored = broker.messages("t")
    assert [m.body for m in stored] == [b"0", b"1", b"2"]
    assert {m.queue_id for m in stored} == {sent.queue.queue_id}
    assert [m.queue_offset for m in stored] == [0, 1, 2]
    assert sent.msg_id.split(",") == [m.msg_id for m in stored]
    with pytest.raises(MessageIllegalError, match="one topic"):
        await producer.send_batch([Message("t", b"a"), Message("u", b"b")])
    with pytest.raises(MessageIllegalError, match="delayed"):
        await producer.send_batch([Message("t", b"a"), Message("t", b"b", delay_level=2)])
    with pytest.raises(MessageIllegalError, match="empty"):
        await producer.send_batch([Message("t", b"a"), Message("t", b"")])
    assert len(broker.messages("t")) == 3 and broker.messages("u") == []


# -- filters ------------------------------------------------------------------------------------


async def test_a_tag_expression_selects_messages_and_the_rest_is_acknowledged(
    broker: MemoryBroker, producer: MemoryProducer
) -> None:
    sink = Sink()
    await start_consumer(broker, "g", "t", sink, "a || b")
    for tag in ("a", "b", "c", None, "a"):
        await producer.send(Message("t", tag.encode() if tag else b"-", tags=tag))
    await broker.drain()
    assert sorted(sink.bodies) == [b"a", b"a", b"b"]
    assert broker.lag("g", "t") == 0  # the skipped ones are committed too


async def test_a_sql92_filter_selects_by_properties(
    broker: MemoryBroker, producer: MemoryProducer
) -> None:
    sink = Sink()
    sql = "region = 'eu' AND amount > 10 AND TAGS IN ('paid')"
    await start_consumer(broker, "g", "t", sink, sql, "SQL92")
    for body, tag, props in [
        (b"yes", "paid", {"region": "eu", "amount": "11"}),
        (b"small", "paid", {"region": "eu", "amount": "10"}),
        (b"us", "paid", {"region": "us", "amount": "50"}),
        (b"no-amount", "paid", {"region": "eu"}),
        (b"tag", "refund", {"region": "eu", "amount": "99"}),
    ]:
        await producer.send(Message("t", body, tags=tag, properties=props))
    await broker.drain()
    assert sink.bodies == [b"yes"]


async def test_a_bad_sql92_filter_is_refused_at_subscribe(broker: MemoryBroker) -> None:
    with pytest.raises(SubscriptionParseFailedError, match="SQL92"):
        await start_consumer(broker, "g", "t", Sink(), "a >", "SQL92")


# -- message models -----------------------------------------------------------------------------


async def test_clustering_members_share_the_queues_and_each_message_goes_to_one(
    broker: MemoryBroker, producer: MemoryProducer
) -> None:
    one, two = Sink(), Sink()
    c1 = await start_consumer(broker, "g", "t", one)
    c2 = await start_consumer(broker, "g", "t", two)
    await send_all(producer, "t", [b"%d" % i for i in range(8)])
    await broker.drain()
    assert len(one.seen) == len(two.seen) == 4
    assert sorted(one.bodies + two.bodies) == sorted(b"%d" % i for i in range(8))
    q1 = {mq.queue_id for mq in c1.process_queues if mq.topic == "t"}
    q2 = {mq.queue_id for mq in c2.process_queues if mq.topic == "t"}
    assert q1.isdisjoint(q2) and q1 | q2 == {0, 1, 2, 3}
    await c2.stop()  # its queues go back to c1, from the committed offsets
    await send_all(producer, "t", [b"late-%d" % i for i in range(4)])
    await broker.drain()
    assert sorted(one.bodies)[-4:] == [b"late-%d" % i for i in range(4)]
    assert len(two.seen) == 4


async def test_broadcasting_gives_every_instance_every_message_and_drops_failures(
    broker: MemoryBroker, producer: MemoryProducer
) -> None:
    one, two = Sink(fail=lambda m: 0), Sink()
    for sink in (one, two):
        await start_consumer(broker, "g", "t", sink, message_model="BROADCASTING")
    await send_all(producer, "t", [b"a", b"b", b"c"])
    await broker.drain()
    assert sorted(one.bodies) == sorted(two.bodies) == [b"a", b"b", b"c"]
    await broker.advance(3600)
    assert len(one.seen) == 3  # broadcasting failures are not retried
    assert broker.messages("%RETRY%g") == [] and broker.dlq("g") == []


async def test_two_groups_each_get_every_message(
    broker: MemoryBroker, producer: MemoryProducer
) -> None:
    a, b = Sink(), Sink()
    await start_consumer(broker, "ga", "t", a)
    await start_consumer(broker, "gb", "t", b)
    await send_all(producer, "t", [b"1", b"2"])
    await broker.drain()
    assert sorted(a.bodies) == sorted(b.bodies) == [b"1", b"2"]


# -- retries and the dead-letter queue ----------------------------------------------------------


async def test_a_failed_message_is_retried_after_the_broker_back_off(
    broker: MemoryBroker, producer: MemoryProducer
) -> None:
    sink = Sink(fail=lambda m: 0 if m.reconsume_times == 0 else None)
    await start_consumer(broker, "g", "orders", sink)
    sent = await producer.send(Message("orders", b"o-1", tags="paid"))
    await broker.drain()
    assert len(sink.seen) == 1
    [waiting] = broker.retry("g")
    assert waiting.properties[Prop.DELAY_TIME_LEVEL] == "3"  # 3 + reconsume times: 10 s
    await broker.advance(9.9)
    assert len(sink.seen) == 1
    await broker.advance(0.1)
    _, again = sink.seen
    assert again.topic == "orders"  # the consumer restores the real topic
    assert again.properties[Prop.RETRY_TOPIC] == "orders"
    assert again.properties[Prop.ORIGIN_MESSAGE_ID] == sent.msg_id
    assert (again.msg_id, again.tags, again.body) == (sent.msg_id, "paid", b"o-1")
    assert again.reconsume_times == 1
    assert broker.retry("g") == [] and broker.lag("g", "orders") == 0


async def test_the_back_off_grows_with_each_attempt_and_a_level_can_be_asked(
    broker: MemoryBroker, producer: MemoryProducer
) -> None:
    levels = {0: 0, 1: 0, 2: 2}  # attempt -> level: 10 s, then 30 s, then asked for 5 s
    sink = Sink(fail=lambda m: levels.get(m.reconsume_times))
    await start_consumer(broker, "g", "t", sink)
    await producer.send(Message("t", b"x"))
    await broker.advance(10)
    assert [m.reconsume_times for m in sink.seen] == [0, 1]
    await broker.advance(29)
    assert len(sink.seen) == 2
    await broker.advance(1)
    assert len(sink.seen) == 3
    await broker.advance(5)
    assert [m.reconsume_times for m in sink.seen] == [0, 1, 2, 3]


async def test_past_max_reconsume_times_a_message_goes_to_the_dlq(
    broker: MemoryBroker, producer: MemoryProducer
) -> None:
    sink = Sink(fail=lambda m: 0)
    await start_consumer(broker, "g", "t", sink, max_reconsume_times=2)
    sent = await producer.send(Message("t", b"x", tags="a"))
    await broker.advance(3600)
    assert [m.reconsume_times for m in sink.seen] == [0, 1, 2]
    [dead] = broker.dlq("g")
    assert dead.topic == "%DLQ%g" and dead.reconsume_times == 3
    assert dead.properties[Prop.DLQ_ORIGIN_TOPIC] == "t"
    assert dead.properties[Prop.DLQ_ORIGIN_MESSAGE_ID] == sent.msg_id
    assert (dead.msg_id, dead.tags) == (sent.msg_id, "a")
    assert broker.retry("g") == []


async def test_level_minus_one_sends_a_message_to_the_dlq_at_once(
    broker: MemoryBroker, producer: MemoryProducer
) -> None:
    sink = Sink(fail=lambda m: -1 if m.body == b"bad" else None)
    await start_consumer(broker, "g", "t", sink, consume_message_batch_max_size=2)
    await producer.send_batch([Message("t", b"good"), Message("t", b"bad")])
    await broker.drain()
    assert [m.body for m in broker.dlq("g")] == [b"bad"]
    assert broker.retry("g") == [] and len(sink.seen) == 2


async def test_an_exception_or_reconsume_later_retries_the_whole_batch(
    broker: MemoryBroker, producer: MemoryProducer
) -> None:
    calls: list[list[bytes]] = []

    async def handler(batch: list[StoredMessage], ctx: ConsumeContext) -> ConsumeResult:
        calls.append([m.body for m in batch])
        if len(calls) == 1:
            raise RuntimeError("boom")
        if len(calls) == 2:
            ctx.delay_level_when_next_consume = 1
            return ConsumeResult.RECONSUME_LATER
        return ConsumeResult.SUCCESS

    await start_consumer(broker, "g", "t", handler, consume_message_batch_max_size=8)
    await producer.send_batch([Message("t", b"1"), Message("t", b"2")])
    await broker.drain()
    assert calls == [[b"1", b"2"]]
    assert len(broker.retry("g")) == 2
    await broker.advance(10)  # the retries (one queue) come back, then fail again at level 1
    assert sorted(b for c in calls[1:] for b in c) == [b"1", b"2"]
    await broker.advance(1)
    assert sorted(b for c in calls for b in c) == [b"1", b"1", b"1", b"2", b"2", b"2"]
    assert broker.retry("g") == []


async def test_a_handler_over_its_consume_timeout_counts_as_failed(
    broker: MemoryBroker, producer: MemoryProducer
) -> None:
    calls = 0

    async def slow_once(batch: list[StoredMessage], ctx: ConsumeContext) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            await asyncio.Event().wait()  # never set: the consume timeout ends it

    await start_consumer(broker, "g", "t", slow_once, consume_timeout_s=0.05)
    await producer.send(Message("t", b"x"))
    await broker.drain()
    assert calls == 1 and len(broker.retry("g")) == 1
    await broker.advance(10)
    assert calls == 2 and broker.retry("g") == []


# -- offsets ------------------------------------------------------------------------------------


async def test_a_restarted_consumer_resumes_from_the_committed_offset(
    broker: MemoryBroker, producer: MemoryProducer
) -> None:
    sink = Sink()
    c = await start_consumer(broker, "g", "t", sink)
    await send_all(producer, "t", [b"1", b"2"])
    await broker.drain()
    await c.stop()
    await send_all(producer, "t", [b"3", b"4", b"5"])
    await broker.drain()
    assert broker.lag("g", "t") == 3 and len(sink.seen) == 2
    assert sum(broker.offsets("g")[("t", q)] for q in range(4)) == 2
    await c.start()  # the same consumer again: it catches up, nothing twice
    await broker.drain()
    assert sorted(sink.bodies) == [b"1", b"2", b"3", b"4", b"5"]
    other = Sink()  # a new member of the group (a restarted service) also resumes there
    await c.stop()
    await send_all(producer, "t", [b"6"])
    await start_consumer(broker, "g", "t", other)
    await broker.drain()
    assert other.bodies == [b"6"]


async def test_where_a_new_group_starts(broker: MemoryBroker, producer: MemoryProducer) -> None:
    await send_all(producer, "t", [b"old"])
    early = Sink()  # the queue still holds its first message: a new group starts at 0
    await start_consumer(broker, "early", "t", early)
    await broker.drain()
    assert early.bodies == [b"old"]
    broker.expire("t")  # retention deleted the old messages: LAST_OFFSET now means the end
    await send_all(producer, "t", [b"kept"])
    broker.expire("t")
    last, first = Sink(), Sink()
    await start_consumer(broker, "last", "t", last)
    await start_consumer(broker, "first", "t", first,
                         consume_from_where="CONSUME_FROM_FIRST_OFFSET")  # fmt: skip
    await send_all(producer, "t", [b"new"])
    await broker.drain()
    assert last.bodies == first.bodies == [b"new"]
    assert early.bodies == [b"old", b"new"]


async def test_a_new_broadcasting_consumer_starts_at_the_end(
    broker: MemoryBroker, producer: MemoryProducer
) -> None:
    await send_all(producer, "t", [b"before"])
    sink = Sink()
    await start_consumer(broker, "g", "t", sink, message_model="BROADCASTING")
    await send_all(producer, "t", [b"after"])
    await broker.drain()
    assert sink.bodies == [b"after"]


# -- driving ------------------------------------------------------------------------------------


async def test_started_consumers_are_fed_in_the_background(
    broker: MemoryBroker, producer: MemoryProducer
) -> None:
    sink = Sink()
    await start_consumer(broker, "g", "t", sink)
    await producer.send(Message("t", b"x"))
    await check_for(lambda: sink.bodies == [b"x"])


async def test_consume_concurrency_bounds_the_handler_calls_at_once(
    broker: MemoryBroker, producer: MemoryProducer
) -> None:
    sink = Sink()
    await start_consumer(broker, "g", "t", sink, consume_concurrency=2)
    await send_all(producer, "t", [b"%d" % i for i in range(10)])
    await broker.drain()
    assert len(sink.seen) == 10 and sink.max_active == 2


async def test_drain_gives_up_on_a_listener_that_never_settles(
    broker: MemoryBroker, producer: MemoryProducer
) -> None:
    async def echo(batch: list[StoredMessage], ctx: ConsumeContext) -> None:
        await producer.send(Message("t", b"again"))

    await start_consumer(broker, "g", "t", echo)
    await producer.send(Message("t", b"x"))
    with pytest.raises(RuntimeError, match="still delivering"):
        await broker.drain(max_rounds=20)


async def test_the_fake_clock_never_goes_back(broker: MemoryBroker) -> None:
    with pytest.raises(ValueError, match="back"):
        await broker.advance(-1)
    with pytest.raises(ValueError, match="back"):
        broker.clock.advance(-1)
    broker.clock.advance(1.5)
    assert broker.clock() == T0 + 1.5 and broker.clock.now_ms() == int(T0 * 1000) + 1500


async def test_a_consumer_takes_push_consumer_options_and_ignores_the_ones_it_has_no_use_for(
    broker: MemoryBroker, producer: MemoryProducer, tmp_path: Path
) -> None:
    sink = Sink()
    await start_consumer(
        broker, "g", "t", sink, pull_batch_size=8, pull_threshold_for_queue=10,
        rebalance_interval_ms=1, persist_interval_ms=1, offset_store_dir=tmp_path,
        local_retry_delay_ms=1, instance_name="svc-1", await_termination_ms=100,
    )  # fmt: skip
    with pytest.raises(ConfigurationError, match="consume_mode"):
        MemoryConsumer(broker, "g", consume_mode="FIFO")  # type: ignore[arg-type]
    await producer.send(Message("t", b"x"))
    await broker.drain()
    assert sink.bodies == [b"x"]


async def test_a_send_to_a_queue_the_topic_does_not_have_is_refused(
    broker: MemoryBroker, producer: MemoryProducer
) -> None:
    from rmqkit.client.message import MessageQueue
    from rmqkit.errors import SystemError_

    sent = await producer.send(Message("t", b"x"), queue=MessageQueue("t", "broker-a", 3))
    assert sent.queue.queue_id == 3 and broker.messages("t")[0].queue_id == 3
    with pytest.raises(SystemError_, match="illegal"):
        await producer.send(Message("t", b"x"), queue=MessageQueue("t", "broker-a", 4))
