"""Delayed messages, consumer retries and the dead-letter queue with real clients (issue 5).

The broker's delay levels are shortened through broker.properties (`messageDelayLevel`, with
`rmqkit serve --config` and a separate `rmqkit namesrv`; the last test checks that the embedded
`serve` takes them from the environment too), so a retry chain takes about two
seconds instead of minutes: a failed message comes back from `%RETRY%<group>` at level 3 + its
reconsume times (300 ms, 600 ms, 900 ms here), and once it has been retried the consumer's
maxReconsumeTimes times it lands in `%DLQ%<group>`.

Timings are compared as measured by the clients (`at`: when the handler ran, `sentAt`: when the
send returned, both Date.now() / time.time() on this host) and as stamped by the broker
(`bornTimestamp`, `storeTimestamp`): never earlier than the level's delay minus TOLERANCE_MS, and
with generous slack upwards (the default levels, 10 s and more, would be far past it).
"""

from __future__ import annotations

import asyncio
import itertools

import pytest

from rmqkit.protocol.codes import RequestCode, ResponseCode
from rmqkit.testing import check_for

from .harness import Client, Event, Lab

pytestmark = pytest.mark.integration

# Levels 1..18; retries use level 3 + reconsume times: 300 ms, 600 ms, 900 ms, 1200 ms, ...
LEVEL_MS = [100, 100, 300, 600, 900, 1200] + [100] * 12
LEVELS = " ".join(f"{ms}ms" for ms in LEVEL_MS)
TOLERANCE_MS = 50  # the clocks compared are this host's; timestamps are whole milliseconds
SLACK_MS = 5000  # upper bound above the delay: only meant to tell the short levels from defaults


def level_ms(level: int) -> int:
    return LEVEL_MS[level - 1]


def deliveries(client: Client, body: str) -> list[Event]:
    return [m for m in client.messages if m["body"] == body]


def assert_backoff(chain: list[Event]) -> None:
    """Delivery k+1 of a retried message comes level 3 + k after delivery k, not sooner."""
    for k, (before, after) in enumerate(itertools.pairwise(chain)):
        want = level_ms(3 + k)
        gap = after["at"] - before["at"]
        assert want - TOLERANCE_MS <= gap < want + SLACK_MS, (k, gap, want, chain)
        # The broker stored the retry when it was due: its store time is the sent-back time
        # (after delivery k) plus the level's delay.
        stored = after["storeTimestamp"] - before["at"]
        assert stored >= want - TOLERANCE_MS, (k, stored, want, chain)


async def pull_status(lab: Lab, group: str, topic: str) -> tuple[int, str | None]:
    """A consumer's PULL_MESSAGE of queue 0 of `topic`: the broker's answer code and remark."""
    ext = {
        "consumerGroup": group, "topic": topic, "queueId": "0", "queueOffset": "0",
        "maxMsgNums": "32", "sysFlag": "0", "commitOffset": "0", "suspendTimeoutMillis": "0",
        "subscription": "*", "subVersion": "0",
    }  # fmt: skip
    r = await lab.request(RequestCode.PULL_MESSAGE, ext)
    return r.code, r.remark


async def test_alions_retries_through_the_retry_topic_then_the_dlq(unstarted_lab: Lab) -> None:
    lab = unstarted_lab
    await lab.start_server(properties={"messageDelayLevel": LEVELS})
    topic, group = "TP_retry", "GID_retry"
    retry_topic, dlq = f"%RETRY%{group}", f"%DLQ%{group}"
    await lab.create_topic(topic)
    # maxReconsumeTimes travels in every CONSUMER_SEND_MSG_BACK: the 4th failure goes to the DLQ.
    consumer = await lab.alions("consumer", "consume", group=group, topic=topic,
                                maxReconsumeTimes=3, retry={"bodies": ["fail-me"]})  # fmt: skip
    await consumer.wait_for(lambda: consumer.queues() == {0, 1, 2, 3}, what="queues taken")
    msgs = [{"body": "fail-me", "keys": ["key-fail-me"]}, {"body": "fine", "keys": ["key-fine"]}]
    await lab.produce("alions", topic, msgs)

    async def in_dlq() -> bool:
        return bool(await lab.query_messages(dlq, "key-fail-me"))

    await consumer.wait_for(lambda: len(deliveries(consumer, "fail-me")) >= 4, within_s=20,
                            what="the first delivery and 3 retries")  # fmt: skip
    # The 4th failure is sent back after the handler reported it; the key index follows the store.
    await check_for(in_dlq, timeout=5, interval=0.05, message=f"key-fail-me in {dlq}")

    # Longer than any retry level: a 5th delivery, or a 4th retry stored, would show by now.
    await asyncio.sleep(1.5)
    chain = deliveries(consumer, "fail-me")
    assert [m["reconsumeTimes"] for m in chain] == [0, 1, 2, 3], consumer.describe()
    # The first failure answers ACTION_RETRY; a redelivery (from %RETRY%, whose ali-ons wrapper
    # drops the handler's answer) fails by throwing.
    assert [m["action"] for m in chain] == ["retry", "throw", "throw", "throw"]
    assert [m["viaRetryTopic"] for m in chain] == [False, True, True, True]
    first = chain[0]
    assert first["retryTopic"] is None and first["originMsgId"] is None
    for m in chain[1:]:
        # Each retry is a new message of %RETRY%<group> that remembers where it came from.
        assert (m["topic"], m["retryTopic"], m["originMsgId"]) == (topic, topic, first["msgId"])
        assert (m["keys"], m["bornTimestamp"]) == ("key-fail-me", first["bornTimestamp"])
    assert len({m["msgId"] for m in chain}) == 4
    assert_backoff(chain)
    assert [(m["reconsumeTimes"], m["action"]) for m in deliveries(consumer, "fine")] == [(0, "ok")]

    # Three messages went through %RETRY%<group> (queue 0 of its one queue), one to the DLQ.
    assert await lab.max_offset(retry_topic) == 3
    assert await lab.max_offset(dlq) == 1
    [dead] = await lab.query_messages(dlq, "key-fail-me")
    assert (dead.topic, dead.body, dead.keys) == (dlq, b"fail-me", ["key-fail-me"])
    assert dead.properties["DLQ_ORIGIN_TOPIC"] == topic
    assert dead.properties["DLQ_ORIGIN_MESSAGE_ID"] == first["msgId"]
    assert dead.reconsume_times >= 3
    # The DLQ is write-only: the group cannot pull it.
    code, remark = await pull_status(lab, group, dlq)
    assert code == ResponseCode.NO_PERMISSION, (code, remark)

    await consumer.finish_ok()
    assert len(consumer.of("thrown")) == 3, consumer.describe()
    await lab.stop_server()


async def test_delayed_messages_arrive_after_their_level_not_before(unstarted_lab: Lab) -> None:
    lab = unstarted_lab
    await lab.start_server(properties={"messageDelayLevel": LEVELS})
    topic = "TP_delay"
    await lab.create_topic(topic)
    js = await lab.alions("alions-consumer", "consume", group="GID_delay_js", topic=topic)
    cpp = await lab.cpp("cpp-consumer", "consume", group="GID_delay_cpp", topic=topic)
    await js.wait_for(lambda: js.queues() == {0, 1, 2, 3}, what="queues taken")
    await cpp.wait_for(lambda: cpp.cpp_allocation(topic) == {0, 1, 2, 3}, what="queues taken")

    # Sent in this order; they must arrive as: now, level 3 (300 ms), level 6 (1200 ms).
    msgs = [
        {"body": "level-6", "keys": ["k6"], "delayTimeLevel": 6},
        {"body": "level-3", "keys": ["k3"], "delayTimeLevel": 3},
        {"body": "now", "keys": ["k0"]},
    ]
    producer = await lab.produce("alions", topic, msgs)
    sent = {s["body"]: s for s in producer.of("sent")}
    delay = {"level-6": level_ms(6), "level-3": level_ms(3), "now": 0}
    for consumer in (js, cpp):
        await consumer.wait_for(lambda c=consumer: set(c.bodies) == set(delay), within_s=20,
                                what="the three messages")  # fmt: skip
    await asyncio.sleep(0.3)  # nothing comes twice

    for consumer in (js, cpp):
        got = consumer.messages
        assert [m["body"] for m in got] == ["now", "level-3", "level-6"], consumer.describe()
        for m in got:
            want = delay[m["body"]]
            # Measured by the clients: from the send's return to the handler.
            waited = m["at"] - sent[m["body"]]["sentAt"]
            assert want - TOLERANCE_MS <= waited < want + SLACK_MS, (consumer.name, m, waited)
            # Stamped by the broker: the message is stored in its topic when it is due.
            held = m["storeTimestamp"] - m["bornTimestamp"]
            assert want - TOLERANCE_MS <= held < want + SLACK_MS, (consumer.name, m, held)
            assert m["reconsumeTimes"] == 0
    for consumer in (js, cpp):
        await consumer.finish_ok()
    await lab.stop_server()


async def test_cpp_reconsume_later_retries_through_the_retry_topic(unstarted_lab: Lab) -> None:
    lab = unstarted_lab
    await lab.start_server(properties={"messageDelayLevel": LEVELS})
    topic, group = "TP_cpp_retry", "GID_cpp_retry"
    await lab.create_topic(topic)
    # The broker creates %RETRY%<group> at the group's first heartbeat, but librocketmq 0.4.4 only
    # looks at the topics it subscribes again in its 20 s rebalance: as for a group that has run
    # before, the retry topic exists (and is routed) when this consumer starts.
    await lab.create_topic(f"%RETRY%{group}", queues=1)
    consumer = await lab.cpp("cpp-consumer", "consume", group=group, topic=topic,
                             retry={"bodies": ["fail-me"], "times": 2})  # fmt: skip
    await consumer.wait_for(lambda: consumer.cpp_allocation(topic) == {0, 1, 2, 3},
                            what="queues taken")  # fmt: skip
    await consumer.wait_for(lambda: consumer.cpp_allocation(f"%RETRY%{group}") == {0},
                            what="the retry queue taken")  # fmt: skip
    msgs = [{"body": "fail-me", "keys": "key-fail-me"}, {"body": "fine", "keys": "key-fine"}]
    producer = await lab.produce("cpp", topic, msgs)
    uniq = {s["body"]: s["msgId"] for s in producer.of("sent")}

    # RECONSUME_LATER twice, then CONSUME_SUCCESS.
    await consumer.wait_for(lambda: len(deliveries(consumer, "fail-me")) >= 3, within_s=20,
                            what="the first delivery and 2 retries")  # fmt: skip
    await asyncio.sleep(1.0)  # longer than the next level: a 4th delivery would show by now
    chain = deliveries(consumer, "fail-me")
    assert [(m["reconsumeTimes"], m["action"]) for m in chain] == [
        (0, "retry"), (1, "retry"), (2, "ok")
    ], consumer.describe()  # fmt: skip
    # librocketmq shows a retry under its first topic and its producer's id (UNIQ_KEY); each is
    # a new message of %RETRY%<group>: offsets 0 and 1 of its queue.
    assert {(m["topic"], m["keys"], m["msgId"]) for m in chain} == {
        (topic, "key-fail-me", uniq["fail-me"])
    }
    assert [m["queueOffset"] for m in chain[1:]] == [0, 1], consumer.describe()
    assert_backoff(chain)
    assert [(m["reconsumeTimes"], m["action"]) for m in deliveries(consumer, "fine")] == [(0, "ok")]
    assert await lab.max_offset(f"%RETRY%{group}") == 2
    assert await lab.query_messages(f"%DLQ%{group}", "key-fail-me") == []
    await consumer.finish_ok()
    await lab.stop_server()


async def test_serve_takes_the_delay_levels_from_the_environment(unstarted_lab: Lab) -> None:
    lab = unstarted_lab
    await lab.start_server(env={"RMQKIT_STORE__MESSAGE_DELAY_LEVEL": LEVELS})
    await lab.create_topic("TP_env_delay")
    consumer = await lab.alions("consumer", "consume", group="GID_env", topic="TP_env_delay")
    await consumer.wait_for(lambda: consumer.queues() == {0, 1, 2, 3}, what="queues taken")
    await lab.produce("alions", "TP_env_delay", [{"body": "level-3", "delayTimeLevel": 3}])
    try:
        # 300 ms with LEVELS; 10 s with the default levels.
        await consumer.wait_for(lambda: consumer.bodies == ["level-3"], within_s=4,
                                what="the level 3 message, due after 300 ms")  # fmt: skip
        await consumer.finish_ok()
    finally:
        await lab.stop_server()
