"""The rmqkit client talking to other clients through rmqkit: an rmqkit Producer's messages are
decoded by ali-ons and by the C++ client, and an rmqkit PushConsumer decodes theirs (compressed
bodies included), with exact bodies, tags and keys."""

from __future__ import annotations

import itertools

import pytest

from rmqkit.client.message import Message
from rmqkit.client.producer import Producer
from rmqkit.client.push_consumer import ConsumeContext, ConsumeResult, PushConsumer
from rmqkit.protocol.record import StoredMessage
from rmqkit.testing import check_for

from .harness import Lab

pytestmark = pytest.mark.integration

BIG = "".join(chr(ord("a") + i % 26) for i in range(6000))  # compressed by every client
_names = itertools.count()


def outgoing(prefix: str) -> list[tuple[str, str, str]]:
    rows = [(f"{prefix}{i}", f"Tag{i % 2}", f"{prefix}-key{i}") for i in range(10)]
    return [*rows, (BIG, "Tag0", "big")]


@pytest.mark.parametrize("kind", ["alions", "cpp"])
async def test_rmqkit_producer_to_other_consumers(lab: Lab, kind: str) -> None:
    topic = f"TP_py_to_{kind}"
    await lab.create_topic(topic)
    start = lab.alions if kind == "alions" else lab.cpp
    consumer = await start(f"{kind}-consumer", "consume", group=f"GID_py_{kind}", topic=topic)
    if kind == "alions":
        await consumer.wait_for(lambda: consumer.queues() == {0, 1, 2, 3}, what="queues taken")
    else:
        await consumer.wait_for(lambda: consumer.of("ready"), what="consumer started")
    rows = outgoing("py")
    async with Producer("PID_py", lab.namesrv, instance_name=f"py{next(_names)}") as p:
        for body, tag, key in rows:
            await p.send(Message(topic, body.encode(), tags=tag, keys=[key]))
    expected = {body: (tag, key) for body, tag, key in rows}
    await consumer.wait_for(lambda: set(consumer.bodies) == set(expected), what="every message")
    await consumer.finish_ok()
    assert {m["body"]: (m["tags"], m["keys"]) for m in consumer.messages} == expected
    await lab.stop_server()


@pytest.mark.parametrize("kind", ["alions", "cpp"])
async def test_other_producers_to_rmqkit_consumer(lab: Lab, kind: str) -> None:
    topic = f"TP_{kind}_to_py"
    await lab.create_topic(topic)
    got: list[StoredMessage] = []
    pc = PushConsumer(f"GID_{kind}_py", lab.namesrv, instance_name=f"py{next(_names)}",
                      consume_from_where="CONSUME_FROM_FIRST_OFFSET")  # fmt: skip
    pc.subscribe(topic)

    async def collect(msgs: list[StoredMessage], ctx: ConsumeContext) -> ConsumeResult:
        got.extend(msgs)
        return ConsumeResult.SUCCESS

    pc.register(collect)
    rows = outgoing(kind)
    keys_as = (lambda k: [k]) if kind == "alions" else (lambda k: k)
    msgs = [{"body": b, "tag": t, "keys": keys_as(k)} for b, t, k in rows]
    async with pc:
        await lab.produce(kind, topic, msgs)
        await check_for(lambda: len({m.body for m in got}) == len(rows), timeout=20)
    assert {m.body.decode(): (m.tags, m.keys[0]) for m in got} == {b: (t, k) for b, t, k in rows}
    await lab.stop_server()
